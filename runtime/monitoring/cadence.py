"""How often retraining pays: the cadence factor that stretches or shortens the gaps.

Every retrain's gate measures what it bought: the candidate's error on the new-data
holdout against the champion's, on the same rows. A retrain shown to have cut much of the
champion's error says the champion was stale, and the next retrain should come sooner; one
that cut little says it was not. The factor scales ``policy.cooldown_rows`` (for drift and
every trigger) and the ``labelled_rows`` backstop: halved (down to ``min_factor``) after a
retrain that cut the error by at least ``faster_gain`` of the champion's with the gain
shown (its 95% lower bound above zero: on a champion at 97% a tenth of its error is a few
holdout rows), doubled (up to ``max_factor``, by default 1: the configured gaps) after one
that cut less than ``slower_gain``, kept otherwise.

Why: a fixed gap is right for one stream's pace only. On bench/real_streams.py (5 seeds,
2026-12-04) the champion on covertype was stale at every 2,000-row backstop (retrains cut
its error by a third) and the factor took it to 41 retrains instead of 22, 0.8305 instead of
0.8063 (Electricity 32 instead of 18, 0.7773 instead of 0.7710); on weather, flights and
employment the mean accuracy moved by at most 0.11 point. The factor is read from the gate
events, which are durable, so a restarted daemon and a replay get the same.

Stretching the gaps past the configured ones (``max_factor`` above 1) after retrains that
bought little lost on flights (before bf204f5's defaults, seeds 0 and 1: −0.63/−1.29 points
against periodic retraining at the same number of retrains; a holdout's gain is a noisy
reading, and a stretched gap on a seasonal stream costs more than it saves), so it is
opt-in.
"""

from __future__ import annotations

from runtime.monitoring.settings import CadenceConfig
from runtime.store import events as ev
from runtime.store.events import EventLog


def paced(factor: float, configured: int) -> str:
    """The words a reason adds when the cadence moved a gap from the ``configured`` one:
    "0.5× the configured 2,000: policy.cadence" (the caller knows whether it moved)."""
    return f"{factor:g}× the configured {configured:,}: policy.cadence"


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


def gain_shown(payload: ev.Gate) -> bool:
    """Whether the gate showed the candidate better on the new data (the 95% lower bound
    of its gain above zero; a check without one is taken at its point estimate). On an
    accurate champion a tenth of its error is a few rows of a holdout: noise."""
    check = next((c for c in payload.checks if c.name == "new_data"), None)
    lower = None if check is None else check.numbers.get("gain_lower")
    return lower is None or lower > 0


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
            if cut >= self.cfg.faster_gain and gain_shown(p):
                self.factor = max(self.cfg.min_factor, self.factor / 2)
            elif cut < self.cfg.slower_gain:
                self.factor = min(self.cfg.max_factor, self.factor * 2)
        return self.factor
