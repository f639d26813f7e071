"""Making models: the warm worker and its retrain child, one retrain from rows to a judged
candidate (``retrain_job``), the bootstrap of v1, its stages, and adopting a model trained
elsewhere. A new training strategy goes in the top-level ``strategies/`` package."""
