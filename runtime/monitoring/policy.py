"""Turns detector signals into decisions.

Rules, in order, for an alarm at row ``r``:

1. hysteresis: an alarm from a detector within ``hysteresis_rows`` of its previous alarm
   continues the same drift → suppressed (and the quiet period starts again);
2. warm-up: within ``warmup_rows`` of the last (re)baseline → suppressed;
3. k-of-n voting: an alarm from a voting detector (``vote_among``, default all) acts only
   once ``vote_k`` distinct voting detectors alarmed within ``vote_window_rows`` rows;
   until then it is suppressed and remembered. When the vote passes, the votes are spent,
   the onset is the earliest of the voters' onsets and the drift counts as error/loss
   drift if any voter watched such a signal;
4. response by drift type: an alarm on a signal in ``retrain_on`` (error, loss) asks for a
   retrain, unless every such alarm reports the signal falling (the champion got better:
   alert, or retrain when ``retrain_when_error_falls``); feature drift alone alerts and
   refreshes the reference window (or retrains when ``retrain_on_feature_drift``);
5. at most one retrain episode at a time: while one is waiting for data, queued or
   running, further retrain alarms are recorded but suppressed;
6. cooldown: within ``cooldown_rows`` of the last retrain trigger → suppressed.

A retrain episode starts at the alarm and waits until ``min_samples`` labelled rows since
the alarm's onset exist; then the daemon records the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from detectors.base import DriftSignal
from runtime.config import PolicyConfig
from runtime.monitoring.cadence import paced

Action = Literal["retrain", "alert", "suppressed"]
STATE_VERSION = 1


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    refresh_reference: bool = False


@dataclass(frozen=True)
class Vote:
    detector: str
    signal: str
    row: int
    onset: int | None
    falls: bool = False  # the signal fell (:func:`signal_falls`)


def signal_falls(sig: DriftSignal) -> bool:
    """Whether an alarm reports its signal falling: the mean after the change below the
    mean before it (river's detectors), or CUSUM's ``mean_down`` branch. On ``error`` or
    ``loss`` a fall is the champion getting better, which no retrain needs."""
    d = sig.details
    before, after = d.get("mean_before"), d.get("mean_after")
    if before is not None and after is not None:
        return bool(after < before)
    return d.get("branch") == "mean_down"


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
        self.last_alarm: dict[str, int] = {}  # detector -> row of its latest alarm
        self.votes: list[Vote] = []
        self._vote_onset: int | None = None
        self.cadence_factor = 1.0  # set from the retrains' gains (monitoring/cadence.py)

    @property
    def cooldown_rows(self) -> int:
        """``cooldown_rows`` scaled by the cadence factor."""
        return round(self.cfg.cooldown_rows * self.cadence_factor)

    def _hysteresis(self, sig: DriftSignal, row: int) -> Decision | None:
        h = self.cfg.hysteresis_rows
        previous = self.last_alarm.get(sig.detector)
        self.last_alarm[sig.detector] = row
        if h and previous is not None and 0 <= row - previous < h:
            return Decision("suppressed", f"hysteresis: {sig.detector} alarmed {row - previous} "
                            f"rows ago (re-arms after {h} quiet rows)")
        return None

    def _vote(self, sig: DriftSignal, row: int) -> tuple[Decision | None, list[Vote]]:
        cfg = self.cfg
        voters = cfg.vote_among
        if cfg.vote_k <= 1 or (voters is not None and sig.detector not in voters):
            return None, [Vote(sig.detector, sig.signal, row, sig.onset, signal_falls(sig))]
        since = row - cfg.vote_window_rows
        self.votes = [v for v in self.votes if v.row > since and v.detector != sig.detector]
        self.votes.append(Vote(sig.detector, sig.signal, row, sig.onset, signal_falls(sig)))
        if len(self.votes) < cfg.vote_k:
            return Decision("suppressed", f"vote: {len(self.votes)} of {cfg.vote_k} detectors "
                            f"within {cfg.vote_window_rows} rows"), []
        passed, self.votes = self.votes, []
        return None, passed

    def decide(self, sig: DriftSignal, row: int) -> Decision:
        """Decide what to do about one alarm seen at row ``row``."""
        cfg = self.cfg
        held = self._hysteresis(sig, row)
        if held is not None:
            return held
        if row - self.baseline_row < cfg.warmup_rows:
            return Decision("suppressed", f"warm-up: within {cfg.warmup_rows} rows of the baseline")
        vetoed, voters = self._vote(sig, row)
        if vetoed is not None:
            return vetoed
        onsets = [v.onset for v in voters if v.onset is not None]
        self._vote_onset = min(onsets) if len(voters) > 1 and onsets else None
        signals = {v.signal for v in voters}
        model_signals = signals & {"error", "loss", "confidence"}
        is_feature = not model_signals
        wants_retrain = bool(signals & set(cfg.retrain_on)) or (
            is_feature and cfg.retrain_on_feature_drift)
        refresh = sig.signal not in {"error", "loss", "confidence"} and (
            cfg.refresh_reference_on_feature_drift)
        if wants_retrain and not is_feature and not cfg.retrain_when_error_falls and all(
                v.falls for v in voters if v.signal in model_signals):
            return Decision("alert", f"{sig.signal} fell: the champion got better (alert, "
                            "no retrain)", refresh_reference=refresh)
        if not wants_retrain:
            kind = "feature" if is_feature else "/".join(sorted(model_signals))
            what = f"{kind} drift: alert" + (
                " and refresh the reference window" if refresh
                else "" if is_feature else " (not in policy.retrain_on)")
            return Decision("alert", what, refresh_reference=refresh)
        if self.episode is not None or self.busy:
            return Decision("suppressed", "a retrain is already pending", refresh_reference=refresh)
        if self.last_trigger_row is not None and row - self.last_trigger_row < self.cooldown_rows:
            why = "" if self.cooldown_rows == self.cfg.cooldown_rows else (
                f" ({paced(self.cadence_factor, self.cfg.cooldown_rows)})")
            return Decision(
                "suppressed",
                f"cooldown: within {self.cooldown_rows} rows of the last retrain trigger{why}",
                refresh_reference=refresh,
            )
        return Decision("retrain", f"{sig.signal} drift: retrain", refresh_reference=refresh)

    def start_episode(self, trigger_event: int, sig: DriftSignal, row: int) -> Episode:
        fallback = sig.index if sig.index is not None else row
        onset = sig.onset if sig.onset is not None else fallback
        if self._vote_onset is not None:
            onset = min(onset, self._vote_onset)
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
            "last_alarm": dict(self.last_alarm),
            "votes": [[v.detector, v.signal, v.row, v.onset] for v in self.votes],
            "episode": None if ep is None else {
                "trigger_event": ep.trigger_event, "onset": ep.onset,
                "alarm_row": ep.alarm_row, "detector": ep.detector,
            },
        }

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"policy state version {state.get('version')!r} is not {STATE_VERSION}"
            )
        self.baseline_row = int(state["baseline_row"])
        ltr = state["last_trigger_row"]
        self.last_trigger_row = None if ltr is None else int(ltr)
        self.last_alarm = {str(k): int(v) for k, v in state.get("last_alarm", {}).items()}
        self.votes = [Vote(str(d), str(s), int(r), None if o is None else int(o))
                      for d, s, r, o in state.get("votes", [])]
        ep = state["episode"]
        self.episode = None if ep is None else Episode(
            int(ep["trigger_event"]), int(ep["onset"]), int(ep["alarm_row"]), str(ep["detector"])
        )
