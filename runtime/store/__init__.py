"""Storage: the schema (a new table goes in ``db``), the typed event log (a new event kind in
``events``), rows and late labels, model versions and their versioned unit, the retrain
queue, crash-safe files, the single-instance lock and leadership."""
