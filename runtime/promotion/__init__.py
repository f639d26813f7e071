"""Judging a candidate: the evidence, metrics, the regression gate and its rules, shadow and
rollback watch, the gatekeeper that decides what happens, and operator approval."""
