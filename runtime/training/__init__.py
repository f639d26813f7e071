"""Making models: the warm worker and its retrain child, the retrain job, the bootstrap of v1
and staged training."""
