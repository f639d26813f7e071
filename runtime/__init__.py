"""The daemon that watches a deployed model, retrains it and promotes the result: one
subpackage per concern (store, intake, monitoring, promotion, handoff, training, replay,
review, service, lowest first), ``config`` and ``daemon`` above them, ``cli`` on top."""
