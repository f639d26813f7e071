"""The ``driftloop`` command line: a new command goes in ``main`` (parsing and one function
per command); ``validate`` builds a config's components without starting them, ``progress``
draws the live view. Nothing imports this package but the ``driftloop`` entry point."""
