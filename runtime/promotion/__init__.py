"""Judging a candidate: evidence, metrics (a new metric goes in ``metrics``), the gate (a new
gate rule is a ``settings.Rule`` field judged in ``gate``, its words in ``reasons``), the
shadow and rollback watch, the gatekeeper that acts on a decision, operator approval."""
