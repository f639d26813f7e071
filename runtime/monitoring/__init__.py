"""Watching the champion: scoring rows and feeding detectors (``monitor``), the policy that
turns alarms into retrain requests (``policy``), drift reports, the detector trace and the
offline backtest. A new detector goes in the top-level ``detectors/`` package, not here."""
