"""Telling people what happened: ``collect`` reads a state into a ``Review``, ``story`` tells
it as decisions, ``page`` renders the review page (a new page section is a function there,
fed from ``collect``), ``text`` and ``summary`` are the CLI's plain-text views."""
