"""Storage: the database schema, the event log, ingested rows, model versions and their
versioned unit, the retrain queue, crash-safe files, the single-instance lock and leadership."""
