"""How often retraining pays: the cadence factor that stretches or shortens the gaps.

Every retrain's gate measures what it bought: the candidate's error on the new-data
holdout against the champion's, on the same rows. A retrain that cut little of the
champion's error says the champion was not stale, and the next retrain can wait longer; one
that cut much says it was, and the next should come sooner. The factor scales
``policy.cooldown_rows`` (for drift and every trigger) and the ``labelled_rows`` backstop:
halved (down to ``min_factor``) after a retrain that cut the error by at least
``faster_gain`` of the champion's, doubled (up to ``max_factor``) after one that cut less
than ``slower_gain``, kept otherwise.

Why: on real streams the error detectors fire every couple of thousand rows whether or not
a retrain will help (autocorrelated errors), so drift-triggered retraining acted as a timer
and a fixed schedule with as many retrains did as well (bench/real_streams.py, issue 16);
the retrains' own gains are what tell the useful ones from the wasted. The factor is read
from the gate events, which are durable, so a restarted daemon and a replay get the same.

Measured (``driftloop replay`` with the defaults before bf204f5, seeds 0 and 1, against
periodic retraining at the same number of retrains): Electricity −0.78/−0.52 points without
it, +0.69/+0.33 with it (32 retrains instead of 22); flights −0.13/+0.15 without,
−0.63/−1.29 with it (14–18 retrains: a holdout's gain is too noisy a reading, and a
stretched gap on a seasonal stream costs more than it saves); with ``max_factor: 1`` (only
ever faster) flights still lost 0.6–1.0. So it is opt-in (``policy.cadence.enabled: true``).
"""

from __future__ import annotations

from runtime.monitoring.settings import CadenceConfig
from runtime.store import events as ev
from runtime.store.events import EventLog


def error_cut(payload: ev.Gate) -> float | None:
    """The share of the champion's new-data error the candidate removed (None: unknown)."""
    check = next((c for c in payload.checks if c.name == "new_data"), None)
    if check is None or check.champion is None or check.candidate is None:
        return None
    if check.metric == "mae":
        champ, cand = check.champion, check.candidate
    else:
        champ, cand = 1.0 - check.champion, 1.0 - check.candidate
    if champ <= 1e-9:
        return 0.0 if cand <= 1e-9 else -1.0
    return (champ - cand) / champ


class Cadence:
    """The factor after the gate decisions logged so far (read incrementally)."""

    def __init__(self, cfg: CadenceConfig, events: EventLog) -> None:
        self.cfg = cfg
        self.events = events
        self.factor = 1.0
        self._after = 0

    def refresh(self) -> float:
        """Fold in the holdout-stage gate decisions logged since the last call."""
        if not self.cfg.enabled:
            return 1.0
        for e in self.events.list(kinds=[ev.GATE_PASSED, ev.GATE_FAILED], after_id=self._after):
            self._after = e.id
            p = e.payload
            if not isinstance(p, ev.Gate) or p.stage not in (None, "holdout"):
                continue
            cut = error_cut(p)
            if cut is None:
                continue
            if cut >= self.cfg.faster_gain:
                self.factor = max(self.cfg.min_factor, self.factor / 2)
            elif cut < self.cfg.slower_gain:
                self.factor = min(self.cfg.max_factor, self.factor * 2)
        return self.factor
