"""Telling people what happened: collecting a state's story, the review page (sections, event
log, charts), plain-text views for the CLI and the run summary."""
