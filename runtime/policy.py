"""Turns detector signals into decisions.

Rules, in order, for an alarm at row ``r``:

1. warm-up: within ``warmup_rows`` of the last (re)baseline → suppressed;
2. response by drift type: an alarm on a signal in ``retrain_on`` (error, loss) asks for a
   retrain; feature drift alone alerts and refreshes the reference window (or retrains
   when ``retrain_on_feature_drift``);
3. at most one retrain episode at a time: while one is waiting for data, queued or
   running, further retrain alarms are recorded but suppressed;
4. cooldown: within ``cooldown_rows`` of the last retrain trigger → suppressed.

A retrain episode starts at the alarm and waits until ``min_samples`` labelled rows since
the alarm's onset exist; then the daemon records the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from detectors.base import DriftSignal
from runtime.config import PolicyConfig

Action = Literal["retrain", "alert", "suppressed"]
STATE_VERSION = 1


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    refresh_reference: bool = False


@dataclass(frozen=True)
class Episode:
    """A retrain the policy has decided on, waiting for enough labelled rows."""

    trigger_event: int
    onset: int
    alarm_row: int
    detector: str


class Policy:
    def __init__(self, cfg: PolicyConfig) -> None:
        self.cfg = cfg
        self.baseline_row = 0
        self.last_trigger_row: int | None = None
        self.episode: Episode | None = None
        self.busy = False  # a retrain request is queued or running

    def decide(self, sig: DriftSignal, row: int) -> Decision:
        """Decide what to do about one alarm seen at row ``row``."""
        cfg = self.cfg
        if row - self.baseline_row < cfg.warmup_rows:
            return Decision("suppressed", f"warm-up: within {cfg.warmup_rows} rows of the baseline")
        is_feature = sig.signal not in {"error", "loss", "confidence"}
        wants_retrain = sig.signal in cfg.retrain_on or (is_feature and cfg.retrain_on_feature_drift)
        refresh = is_feature and cfg.refresh_reference_on_feature_drift
        if not wants_retrain:
            what = "feature drift: alert" + (" and refresh the reference window" if refresh else "")
            return Decision("alert", what, refresh_reference=refresh)
        if self.episode is not None or self.busy:
            return Decision("suppressed", "a retrain is already pending", refresh_reference=refresh)
        if self.last_trigger_row is not None and row - self.last_trigger_row < cfg.cooldown_rows:
            return Decision(
                "suppressed",
                f"cooldown: within {cfg.cooldown_rows} rows of the last retrain trigger",
                refresh_reference=refresh,
            )
        return Decision("retrain", f"{sig.signal} drift: retrain", refresh_reference=refresh)

    def start_episode(self, trigger_event: int, sig: DriftSignal, row: int) -> Episode:
        onset = sig.onset if sig.onset is not None else (sig.index if sig.index is not None else row)
        self.episode = Episode(trigger_event, int(onset), row, sig.detector)
        self.last_trigger_row = row
        return self.episode

    def ready(self, labelled_since_onset: int) -> bool:
        return self.episode is not None and labelled_since_onset >= self.cfg.min_samples

    def episode_requested(self) -> None:
        self.episode = None
        self.busy = True

    def retrain_done(self) -> None:
        self.busy = False

    def rebaseline(self, row: int) -> None:
        """After a promotion or rollback: warm-up starts again from ``row``."""
        self.baseline_row = row

    def state(self) -> dict[str, Any]:
        ep = self.episode
        return {
            "version": STATE_VERSION,
            "baseline_row": self.baseline_row,
            "last_trigger_row": self.last_trigger_row,
            "episode": None if ep is None else {
                "trigger_event": ep.trigger_event, "onset": ep.onset,
                "alarm_row": ep.alarm_row, "detector": ep.detector,
            },
        }

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"policy state version {state.get('version')!r} is not {STATE_VERSION}")
        self.baseline_row = int(state["baseline_row"])
        ltr = state["last_trigger_row"]
        self.last_trigger_row = None if ltr is None else int(ltr)
        ep = state["episode"]
        self.episode = None if ep is None else Episode(
            int(ep["trigger_event"]), int(ep["onset"]), int(ep["alarm_row"]), str(ep["detector"])
        )
