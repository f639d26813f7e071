"""Alarms: what a detector's alarm becomes (a decision, an event, a drift report, a retrain).

The policy decides on each alarm; the alarm is logged as ``drift.detected`` (with the
evidently report of a feature drift), its decision carried out (a reference refreshed, a
retrain episode begun), and once the episode has collected enough labelled rows the retrain
is requested under the trigger ``drift-<event id>``. While the daemon replays rows after a
crash, :attr:`Alarms.logged` holds the alarms the crashed daemon had logged since its last
save: a replayed alarm that matches one keeps that event (and so its trigger) instead of
logging the drift twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from detectors.base import Detector, DriftSignal, ReferenceDetector
from runtime.config import DriftloopConfig
from runtime.monitoring.cadence import Cadence
from runtime.monitoring.columns import with_column_detectors
from runtime.monitoring.feed import Alarm, finite
from runtime.monitoring.policy import Decision, Policy
from runtime.monitoring.triggers import Champion, Due, Triggers
from runtime.store import events as ev
from runtime.store.db import Database
from runtime.store.events import EventLog
from runtime.store.retrain_queue import RequestQueue
from runtime.store.rows import count_labelled, last_seq, recent_rows

log = logging.getLogger(__name__)


class Alarms:
    """Handles the detectors' alarms for the champion named at each call."""

    def __init__(
        self,
        cfg: DriftloopConfig,
        db: Database,
        events: EventLog,
        policy: Policy,
        requests: RequestQueue,
        report: Callable[[str], None],
        on_episode: Callable[[], None],
        triggers: Triggers | None = None,
        champion_info: Callable[[str | None], Champion | None] = lambda _: None,
        position: Callable[[], int] | None = None,
    ) -> None:
        """``on_episode`` runs when a retrain episode begins (the daemon warms its worker
        while the episode collects rows); ``triggers`` are those besides drift, asked
        about the champion that ``champion_info`` describes; ``position`` is the last row
        fed to the detectors (default: the last stored row): a retrain is requested on
        the rows up to it and counts the labelled rows up to it, not rows stored since
        that the detectors have not seen (held back while a retrain runs)."""
        self.cfg = cfg
        self.db = db
        self.events = events
        self.policy = policy
        self.requests = requests
        self.report = report
        self.on_episode = on_episode
        self.triggers = triggers
        self.champion_info = champion_info
        self.features = list(cfg.schema.features)
        self.position: Callable[[], int] = position or (lambda: last_seq(db))
        self.logged: dict[str, list[ev.Event]] = {}
        self.cadence = Cadence(cfg.policy.cadence, events)

    def _pace(self) -> None:
        """Scale the cooldown and the backstop by what the retrains so far bought."""
        factor = self.cadence.refresh()
        self.policy.cadence_factor = factor
        if self.triggers is not None:
            self.triggers.cadence_factor = factor

    def handle(self, alarm: Alarm, champion: str | None) -> None:
        det, sig, row = alarm.detector, alarm.signal, alarm.row
        self._pace()
        decision = self.policy.decide(sig, row)
        logged = self.logged.get(sig.detector)
        if logged:  # replaying: the crashed daemon logged this alarm already
            event = logged.pop(0)
            if event.payload_as(ev.DriftDetected).action == decision.action:
                self._act(det, sig, row, decision, event)
                return
        report = self._drift_report(det, sig, row)
        payload = ev.DriftDetected(
            detector=sig.detector,
            signal=sig.signal,
            statistic=finite(sig.statistic),
            threshold=finite(sig.threshold),
            index=sig.index,
            onset=sig.onset,
            window=tuple(sig.window) if sig.window else None,
            row=row,
            action=decision.action,
            reason=decision.reason,
            details=sig.details,
            report=report,
        )
        event = self.events.append(ev.DRIFT_DETECTED, payload, model_version=champion)
        self.report(
            f"drift   row={row:>7}  {sig.detector} on {sig.signal}"
            f"  onset={sig.onset}  → {decision.action} ({decision.reason})"
        )
        self._act(det, sig, row, decision, event)

    def _act(
        self, det: Detector, sig: DriftSignal, row: int, decision: Decision, event: ev.Event
    ) -> None:
        """Carry out the policy's decision on an alarm recorded as ``event``."""
        if decision.refresh_reference and isinstance(det, ReferenceDetector):
            # the new normal is what arrived since the change began, not a mix of both
            since = sig.onset if sig.onset is not None else row
            _, ref = recent_rows(
                self.db, len(self.features), self.cfg.retrain.reference_size, since=since,
                upto=self.position(),
            )
            det.set_reference(ref)
        if decision.action == "retrain":
            self.policy.start_episode(event.id, sig, row)
            self.on_episode()

    def _drift_report(self, det: Detector, sig: DriftSignal, row: int) -> str | None:
        """The evidently report for a feature-drift alarm (path relative to the state
        directory), or None. A report that cannot be written never loses the alarm."""
        reference = getattr(det, "reference", None)
        current = getattr(det, "current", None)
        if not (self.cfg.reports.drift_html and sig.signal == "features" and reference and current):
            return None
        from runtime.monitoring.drift_reports import write_feature_drift_report

        configs = with_column_detectors(
            self.cfg.detectors, self.cfg.schema, self.cfg.schema_detectors
        )
        d = next((d for d in configs if (d.name or d.kind) == det.name), None)
        kind = "ks" if d is None else d.kind
        if kind in ("missing", "unseen"):  # shares, not a two-sample test evidently runs
            return None
        try:
            path = write_feature_drift_report(
                self.cfg.state_dir,
                reference(),
                current(),
                list(getattr(det, "features", [])),
                kind,
                f"row{row}-{sig.detector}",
                categorical=list(getattr(d, "categorical", []) or []),
            )
        except Exception as err:
            log.warning("drift report for %s at row %d not written: %s", sig.detector, row, err)
            return None
        return str(path.relative_to(self.cfg.state_dir))

    def maybe_request_retrain(self, champion: str | None) -> None:
        """Request a retrain once a trigger asks and the policy lets it: the open drift
        episode with its labelled rows, or a trigger of ``policy.triggers``; with
        ``combine: all`` only when every enabled one asks at once."""
        tcfg = self.cfg.policy.triggers
        self._pace()
        ep = self.policy.episode
        drift = ep is not None and self.policy.ready(
            count_labelled(self.db, ep.onset, self.position()))
        dues = self._dues(champion) if self.triggers is not None else []
        if tcfg.combine == "any":
            if drift:
                self._request_drift(champion)
            elif dues:
                self._request(champion, dues[:1])
            return
        asked = {d.kind for d in dues} | ({"drift"} if drift else set())
        wanted = set(tcfg.kinds) | ({"drift"} if tcfg.drift else set())
        if wanted and asked >= wanted:
            if drift:
                self._request_drift(champion, dues)
            else:
                self._request(champion, dues)

    def _dues(self, champion: str | None) -> list[Due]:
        """The non-drift triggers due now, unless a retrain is pending or cooling down."""
        assert self.triggers is not None
        p = self.policy
        row = self.position()
        if p.busy or self.requests.next_pending() is not None:
            return []
        if p.episode is not None and self.cfg.policy.triggers.combine == "any":
            return []  # the drift episode is the pending retrain
        if p.last_trigger_row is not None and row - p.last_trigger_row < p.cooldown_rows:
            return []
        return self.triggers.due(self.champion_info(champion), p.cfg.min_samples, row)

    def _request_drift(self, champion: str | None, dues: list[Due] | None = None) -> None:
        ep = self.policy.episode
        assert ep is not None
        upto = self.position()
        labelled = count_labelled(self.db, ep.onset, upto)
        trigger = f"drift-{ep.trigger_event}"
        payload = ev.RetrainRequested(
            trigger_id=trigger,
            onset=ep.onset,
            upto=upto,
            detector=ep.detector,
            labelled_rows=labelled,
            alarm_row=ep.alarm_row,
            trigger="drift" if not dues else "all",
            reason=None if not dues else "; ".join(
                [f"drift on {ep.detector}", *(d.reason for d in dues)]),
        )
        self.requests.request(trigger, payload, champion)
        self.policy.episode_requested()
        if self.triggers is not None:
            self.triggers.fired(upto, dues or [], self.champion_info(champion))
        self.report(f"retrain requested  {trigger}  rows {ep.onset}..{upto} ({labelled} labelled)")

    def _request(self, champion: str | None, dues: list[Due]) -> None:
        """Request the retrain that ``dues`` (no drift) ask for."""
        assert self.triggers is not None
        onset = min(d.onset for d in dues)
        upto = self.position()
        labelled = count_labelled(self.db, onset, upto)
        trigger = dues[0].trigger_id if len(dues) == 1 else "all-" + "+".join(
            d.trigger_id for d in dues)
        payload = ev.RetrainRequested(
            trigger_id=trigger, onset=onset, upto=upto, detector=None, labelled_rows=labelled,
            alarm_row=None, trigger=dues[0].kind if len(dues) == 1 else "all",
            reason="; ".join(d.reason for d in dues),
        )
        self.requests.request(trigger, payload, champion)
        self.policy.episode_requested()
        self.policy.last_trigger_row = upto
        self.triggers.fired(upto, dues, self.champion_info(champion))
        self.report(f"retrain requested  {trigger}  rows {onset}..{upto} ({labelled} labelled):"
                    f" {payload.reason}")
