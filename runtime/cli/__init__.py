"""The ``driftloop`` command line: argument parsing, each command, validate, and the live
progress display."""
