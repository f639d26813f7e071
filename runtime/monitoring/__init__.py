"""Watching the champion: scoring rows, feeding detectors, the policy that turns signals into
decisions, drift reports, detector traces, and the offline backtest."""
