"""The daemon: source → ingest → monitor → detectors → policy → retrain → gate → registry.

All work happens in :meth:`Daemon.step`, one batch at a time, so the daemon can run one
burst over a finite source and return (``--until-drained``, and the tests) or run forever
with APScheduler calling ``step`` on an interval. Retrains run in a child process; the
daemon keeps monitoring while one runs, except for a synthetic source with
``block_on_retrain`` (a replayed stream pauses its clock while the model retrains).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sqlalchemy import select, update

from detectors.base import Detector, DriftSignal, ReferenceDetector
from detectors.registry import build as build_detector
from runtime.config import DriftloopConfig
from runtime.handoff.workers import Handoff
from runtime.intake.directory_source import read_file
from runtime.intake.inbox import Inbox, merge
from runtime.intake.ingest import Accepted, Ingestor
from runtime.intake.kinds import build_source
from runtime.intake.settings import DirectorySourceConfig
from runtime.intake.sources import FileStamp, Source, source_lag
from runtime.monitoring.monitor import Monitor, Signals
from runtime.monitoring.policy import Decision, Policy
from runtime.monitoring.trace import TRACE_KEY, load_trace, write_trace
from runtime.promotion.gatekeeper import LIVE_KEY, Gatekeeper
from runtime.service.scheduler import Scheduler
from runtime.service.server import ApiServer, resolve_token
from runtime.service.systemd import notify, watchdog_interval
from runtime.store import events as ev
from runtime.store.db import Database, from_json, kv, processed_files, to_json
from runtime.store.events import EventLog
from runtime.store.leader import Leadership
from runtime.store.leader import build as build_leader
from runtime.store.lock import StateLock
from runtime.store.retrain_queue import RequestQueue
from runtime.store.rows import (
    count_labelled,
    labelled_rows,
    last_late_label,
    last_seq,
    late_labels_after,
    recent_rows,
    rows_after,
)
from runtime.store.unit import Unit, load_unit
from runtime.store.versions import Registry
from runtime.training.bootstrap import BootstrapError, bootstrap_from_rows
from runtime.training.worker import Outcome, RetrainRunner

log = logging.getLogger(__name__)
Reporter = Callable[[str], None]
STATE_KEY = "daemon_state"
STATE_VERSION = 1
REPLAY_ROWS = 1000  # rows (or late labels) read back per batch when replaying after a crash


class Daemon:
    def __init__(
        self,
        cfg: DriftloopConfig,
        *,
        clock: Callable[[], datetime] | None = None,
        report: Reporter | None = None,
    ) -> None:
        self.cfg = cfg
        self.features = list(cfg.schema.features)
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        self.lock = StateLock(cfg.state_dir)
        self.db = Database.for_state_dir(
            cfg.state_dir, cfg.database_url, synchronous=cfg.sqlite_synchronous
        )
        self.db.create_all()
        self.events = EventLog(self.db, clock)
        self.requests = RequestQueue(self.db, self.events)
        self.registry = Registry(self.db, cfg.state_dir / "models", self.events)
        self.ingestor = Ingestor(self.db, cfg.schema, self.events)
        self.leader: Leadership = build_leader(self.db, cfg.leader)
        suffix = ""  # kv keys of this daemon's own state
        if cfg.leader is not None:  # daemons sharing a database share state_dir: a lock each
            self.lock = StateLock(cfg.state_dir / "instances" / self.leader.instance)
            suffix = f":{self.leader.instance}"
        self.state_key = STATE_KEY + suffix
        self.trace_key = TRACE_KEY + suffix
        self.trace = load_trace(self.db, self.trace_key)  # detector statistics for the review
        self.inbox = Inbox(cfg.api.monitor_queue_rows if cfg.api else 200_000)
        self.last_signals: dict[str, DriftSignal] = {}
        self._watchdog = watchdog_interval()
        self._last_ping = 0.0
        self.policy = Policy(cfg.policy)
        self.detectors: list[Detector] = [build_detector(d, self.features) for d in cfg.detectors]
        self.runner = RetrainRunner(cfg.state_dir / "retrain", cfg.retrain.timeout_seconds)
        self.report: Reporter = report or (lambda line: None)
        self.stop_event = threading.Event()
        self._lock = threading.RLock()
        self.unit: Unit | None = None
        self.gatekeeper = Gatekeeper(
            cfg,
            self.registry,
            self.events,
            self.report,
            db=self.db,
            state_key=LIVE_KEY + suffix,
        )
        self.monitor: Monitor | None = None
        self.source: Source = self._make_source(cursor=0)
        self.rows_seen = 0
        self.seen_seq = 0  # the last stored row this daemon has handled (saved as "seq")
        self.seen_label_seq = 0  # the last late label it has handled (saved as "label_seq")
        self._logged_alarms: dict[str, list[ev.Event]] = {}  # while replaying
        self._last_save = time.monotonic()

    # -- lifecycle -------------------------------------------------------------------
    def open(self) -> None:
        """Take the lock, restore state, record ``daemon.started``."""
        self.lock.acquire()
        torch.set_num_threads(self.cfg.torch_threads)  # the daemon owns its process
        saved = self._load_state()
        self._close_source()
        self.source = self._make_source(cursor=int(saved.get("cursor", 0)))
        requeued = self.requests.requeue() if self.leader.poll(force=True) else 0
        self.runner.warm()  # its imports take seconds: pay them before the first drift
        champion = self.registry.champion()
        if champion is None:
            self._ingest_bootstrap_data()
            champion = self.registry.champion()
        if champion is not None and self.unit is None:
            self._adopt(champion, rebaseline=saved.get("champion") != champion)
            if saved.get("champion") == champion:
                self._restore_detectors(saved)
                self._replay(saved)
        if self.unit is not None:  # a shadow or watch the last daemon left running
            self.gatekeeper.resume(self.unit, self._labelled_positions)
        self.gatekeeper.recover([v.version for v in self.registry.list()])
        self.events.append(
            ev.DAEMON_STARTED,
            {
                "state_dir": str(self.cfg.state_dir),
                "champion": champion,
                "source": self.source.name,
                "requeued_retrains": requeued,
                "detectors": [d.name for d in self.detectors],
            },
            model_version=champion,
        )

    def close(self, reason: str = "stopped") -> None:
        """Cancel a running retrain (recorded), save state, record ``daemon.stopped``."""
        with self._lock:
            if self.runner.running:
                trigger = self.runner.trigger_id
                seconds = self.runner.cancel()
                self.requests.set_status(trigger, "cancelled")
                self.events.append(
                    ev.RETRAIN_FAILED,
                    {
                        "trigger_id": trigger,
                        "reason": "cancelled: the daemon is stopping; "
                        "it will run again when the daemon restarts",
                        "seconds": round(seconds, 3),
                        "cancelled": True,
                    },
                )
            self.runner.close()
            self._save_state()
            self.events.append(
                ev.DAEMON_STOPPED,
                {"reason": reason, "rows_seen": self.rows_seen},
                model_version=self.registry.champion(),
            )
            self._close_source()
            self.leader.close()
            self.lock.release()
            self.db.dispose()

    def request_stop(self, *_: object) -> None:
        self.stop_event.set()

    def run(self, until_drained: bool = False) -> None:
        """Run until stopped (SIGTERM/SIGINT) or, with ``until_drained``, until the source
        is exhausted and no retrain is pending."""
        old = {s: signal.signal(s, self.request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
        token = resolve_token(self.cfg.api) if self.cfg.api is not None else None
        # exports and hooks follow what is committed, in threads of their own
        handoff = Handoff(self.cfg, self.db, self.events, self.registry,
                          is_leader=self.leader.is_leader)
        self.open()
        reason = "stopped by signal"
        server: ApiServer | None = None
        try:
            handoff.start()
            if self.cfg.api is not None:
                server = ApiServer(self, self.cfg.api, token)
                server.start()
                self.report(f"API on {server.url}")
            notify(f"READY=1\nSTATUS=running; champion {self._champion()}")
            if until_drained:
                while not self.stop_event.is_set():
                    did = self.step()
                    if self.drained():
                        reason = "drained"
                        break
                    if not did:
                        self.stop_event.wait(0.05)
            else:
                sched = Scheduler()
                sched.every(self.cfg.scheduler.tick_seconds, self.step, "step")
                sched.every(self.cfg.scheduler.retention_seconds, self.retention, "retention")
                sched.start()
                try:
                    self.stop_event.wait()
                finally:
                    sched.shutdown()
        finally:
            notify("STOPPING=1")
            if server is not None:
                server.stop()  # no row is acknowledged after this
            self.inbox.close()
            with self._lock:
                self._drain_inbox()
            handoff.stop()
            self.close(reason)
            for s, h in old.items():
                signal.signal(s, h)

    def bootstrap(self) -> str:
        """Train v1 (``driftloop bootstrap``): from ``bootstrap.data`` if set, else from
        the source's first rows. Refuses if there is a champion already."""
        self.lock.acquire()
        try:
            existing = self.registry.champion()
            if existing is not None:
                raise BootstrapError(
                    f"{self.cfg.state_dir} already has a champion ({existing}); "
                    "bootstrap trains the first model only"
                )
            self._close_source()
            self.source = self._make_source(cursor=int(self._load_state().get("cursor", 0)))
            self._ingest_bootstrap_data()
            while self.unit is None:
                batch = self.source.poll()
                if batch is not None:
                    accepted = self.ingestor.ingest(batch)
                    self.source.ack(batch)  # stored: a broker must not deliver it again
                    self._after_ingest(accepted)
                elif self.source.exhausted():
                    raise BootstrapError(
                        f"the data ran out before {self.cfg.bootstrap.rows} labelled rows "
                        "were collected for bootstrap"
                    )
                else:
                    time.sleep(0.1)
            self._save_state()
            return self.unit.version
        finally:
            self.lock.release()

    def drained(self) -> bool:
        return (
            self.source.exhausted()
            and not self.runner.running
            and self.requests.next_pending() is None
        )

    # -- one step ----------------------------------------------------------------------
    def step(self) -> bool:
        """Do one unit of work; returns False when there was nothing to do."""
        with self._lock:
            self._ping_watchdog()
            did = self._manage_retrain() if self._lead() else False
            self._follow_champion()
            blocked = self.source.blocks_on_retrain and (
                self.runner.running or self.requests.next_pending() is not None
            )
            if not blocked:
                batch = self.source.poll()
                if batch is not None:
                    accepted = self.ingestor.ingest(batch)
                    self.source.ack(batch)
                    self._after_ingest(accepted)
                    did = True
            did = self._drain_inbox() or did
            if time.monotonic() - self._last_save > 30:
                self._save_state()
            return did

    def _after_ingest(self, acc: Accepted) -> None:
        self.rows_seen += acc.count
        if acc.count:
            self.seen_seq = max(self.seen_seq, int(acc.seqs.max()))
        self.seen_label_seq = max(self.seen_label_seq, acc.label_seq)
        if self.unit is None:
            self._maybe_bootstrap()
            return
        assert self.monitor is not None
        if acc.count:
            self._observe(acc.seqs, acc.x, self.monitor.score(acc.x, acc.y))
            self._live(acc.seqs, acc.x, acc.y)
        if len(acc.labels_joined):
            seqs, x, y = self._rows_by_seq(acc.labels_joined)
            self._labels_joined(seqs, x, y)
            self._live(seqs, x, y)
        self._maybe_request_retrain()
        if self.rows_seen and acc.count:
            self.report(f"ingest  rows={self.rows_seen:>7}  champion={self.unit.version}")

    def _labels_joined(self, seqs: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
        """Late labels joined to the rows ``seqs`` (stored earlier): the signals that
        needed them, for the streaming detectors."""
        assert self.monitor is not None
        self._observe(seqs, None, self.monitor.score(x, y), streaming_only=True)

    def _live(self, seqs: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
        """Labelled rows for the shadow comparison and the rollback watch."""
        if self.unit is None or self.monitor is None:
            return
        changed = self.gatekeeper.observe(seqs, x, self.monitor.class_index(y), self.unit)
        if changed is not None:
            self._adopt(changed, rebaseline=True)

    def _observe(
        self, seqs: np.ndarray, x: np.ndarray | None, sig: Signals, streaming_only: bool = False
    ) -> None:
        for det in self.detectors:
            if det.signal == "features":
                if streaming_only or x is None:
                    continue
                det.update(x, seqs)
            elif det.signal in ("error", "loss", "confidence"):
                if streaming_only and det.signal == "confidence":
                    continue  # needs no label: fed when its row arrived
                values = sig.get(det.signal)
                keep = ~np.isnan(values)
                if keep.any():
                    det.update(values[keep], seqs[keep])
            else:
                if streaming_only or x is None:
                    continue
                det.update(x[:, self.features.index(det.signal)], seqs)
            signal_ = det.check()
            self.last_signals[det.name] = signal_
            self._trace(det, signal_, seqs, x, sig)
            if signal_.drift:
                row = signal_.index if signal_.index is not None else int(seqs[-1])
                self._alarm(det, signal_, int(row))

    def _trace(
        self, det: Detector, s: DriftSignal, seqs: np.ndarray, x: np.ndarray | None, sig: Signals
    ) -> None:
        """One point of the detector's statistic for the review charts (monitoring.trace)."""
        if det.signal in ("error", "loss", "confidence"):
            watched: np.ndarray | None = sig.get(det.signal)
        elif det.signal != "features" and x is not None:
            watched = x[:, self.features.index(det.signal)]
        else:
            watched = None
        value = None
        if watched is not None and np.isfinite(watched).any():
            value = float(np.nanmean(np.where(np.isfinite(watched), watched, np.nan)))
        self.trace.record(
            det.name,
            det.signal,
            int(seqs[-1]),
            value=value,
            statistic=s.statistic,
            threshold=s.threshold,
            drift=s.drift,
            champion=self._champion(),
        )

    def _alarm(self, det: Detector, sig: DriftSignal, row: int) -> None:
        decision = self.policy.decide(sig, row)
        logged = self._logged_alarms.get(sig.detector)
        if logged:  # replaying: the crashed daemon logged this alarm already
            event = logged.pop(0)
            if event.payload.get("action") == decision.action:
                self._act(det, sig, row, decision, event)
                return
        report = self._drift_report(det, sig, row)
        payload: dict[str, Any] = {
            "detector": sig.detector,
            "signal": sig.signal,
            "statistic": _num(sig.statistic),
            "threshold": _num(sig.threshold),
            "index": sig.index,
            "onset": sig.onset,
            "window": list(sig.window) if sig.window else None,
            "row": row,
            "action": decision.action,
            "reason": decision.reason,
            "details": sig.details,
        }
        if report is not None:
            payload["report"] = report
        event = self.events.append(ev.DRIFT_DETECTED, payload, model_version=self._champion())
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
                self.db, len(self.features), self.cfg.retrain.reference_size, since=since
            )
            det.set_reference(ref)
        if decision.action == "retrain":
            self.policy.start_episode(event.id, sig, row)
            self.runner.warm()  # the worker imports while the episode collects rows

    def _drift_report(self, det: Detector, sig: DriftSignal, row: int) -> str | None:
        """The evidently report for a feature-drift alarm (path relative to the state
        directory), or None. A report that cannot be written never loses the alarm."""
        reference = getattr(det, "reference", None)
        current = getattr(det, "current", None)
        if not (self.cfg.reports.drift_html and sig.signal == "features" and reference and current):
            return None
        from runtime.monitoring.drift_reports import write_feature_drift_report

        kind = next((d.kind for d in self.cfg.detectors if (d.name or d.kind) == det.name), "ks")
        try:
            path = write_feature_drift_report(
                self.cfg.state_dir,
                reference(),
                current(),
                list(getattr(det, "features", [])),
                kind,
                f"row{row}-{sig.detector}",
            )
        except Exception as err:
            log.warning("drift report for %s at row %d not written: %s", sig.detector, row, err)
            return None
        return str(path.relative_to(self.cfg.state_dir))

    def _maybe_request_retrain(self) -> None:
        ep = self.policy.episode
        if ep is None:
            return
        labelled = count_labelled(self.db, ep.onset)
        if not self.policy.ready(labelled):
            return
        trigger = f"drift-{ep.trigger_event}"
        upto = last_seq(self.db)
        payload = {
            "trigger_id": trigger,
            "onset": ep.onset,
            "upto": upto,
            "detector": ep.detector,
            "labelled_rows": labelled,
            "alarm_row": ep.alarm_row,
        }
        self.requests.request(trigger, payload, self._champion())
        self.policy.episode_requested()
        self.report(f"retrain requested  {trigger}  rows {ep.onset}..{upto} ({labelled} labelled)")

    # -- retrain and gate ----------------------------------------------------------------
    def _manage_retrain(self) -> bool:
        if self.runner.running:
            trigger = self.runner.trigger_id
            outcome = self.runner.poll()
            if outcome is None:
                return False
            self._finish_retrain(str(trigger), outcome)
            return True
        req = self.requests.next_pending()
        if req is None or self.unit is None:
            return False
        trigger = req["trigger_id"]
        candidate = self.registry.next_version()
        spec = {
            "config": self.cfg.model_dump(mode="json", by_alias=True),
            "config_hash": self.cfg.config_hash(),  # the daemon's, whatever the child parses
            "trigger_id": trigger,
            "champion": self.unit.version,
            "candidate": candidate,
            "onset": req["onset"],
            "upto": req["upto"],
        }
        started = {
            "trigger_id": trigger,
            "champion": self.unit.version,
            "candidate": candidate,
            "onset": req["onset"],
            "upto": req["upto"],
            "strategy": self.cfg.retrain.strategy.kind,
        }
        self.requests.start(trigger, started, candidate)
        self.policy.busy = True
        self.runner.start(trigger, spec)
        self.report(f"retrain started    {trigger}  {self.unit.version} → {candidate}")
        return True

    def _finish_retrain(self, trigger: str, out: Outcome) -> None:
        self.policy.retrain_done()
        if not self.leader.poll(force=True):  # another daemon leads now and re-runs it
            self.requests.set_status(trigger, "cancelled")
            self.report(f"retrain {trigger} dropped: this daemon no longer leads")
            return
        if not out.ok:
            self.requests.set_status(trigger, "failed", {"reason": out.reason})
            self.events.append(
                ev.RETRAIN_FAILED,
                {
                    "trigger_id": trigger,
                    "reason": out.reason,
                    "seconds": round(out.seconds, 3),
                },
                model_version=out.result.get("candidate"),
            )
            self.report(f"retrain failed     {trigger}: {out.reason}")
            return
        res = out.result
        candidate, train = res["candidate"], res["train"]
        self.events.append(
            ev.RETRAIN_FINISHED,
            {
                "trigger_id": trigger,
                "candidate": candidate,
                **train,
                "wall_seconds": round(out.seconds, 3),
            },
            model_version=candidate,
        )
        self.report(
            f"retrain finished   {candidate}: {train['samples']} samples"
            f" in {train['seconds']:.1f} s"
        )
        promoted = self.gatekeeper.judge(trigger, res, self.unit)
        if promoted is not None:
            self._adopt(promoted, rebaseline=True)
        self.requests.set_status(
            trigger, "finished", {"candidate": candidate, "passed": bool(promoted)}
        )
        self.retention()
        self._save_state()

    # -- champion ------------------------------------------------------------------------
    def _champion(self) -> str | None:
        return self.unit.version if self.unit else None

    def _follow_champion(self) -> None:
        """Pick up a rollback or promotion made by another process (the CLI or the API)."""
        current = self.registry.champion()
        if current is not None and current != self._champion():
            self._adopt(current, rebaseline=True)
            self.gatekeeper.followed(current)
            self.report(f"champion is now {current} (changed outside the daemon)")

    def _adopt(self, version: str, rebaseline: bool, monitor_after: int | None = None) -> None:
        """Load a version's unit and, if asked, re-baseline the detectors on it: they start
        after the last stored row, or with ``monitor_after`` after that row, fed every row
        stored since (:meth:`_monitor_after`)."""
        self.unit = load_unit(self.registry, self.cfg, version)
        self.monitor = Monitor(self.unit.model, list(self.cfg.schema.classes))
        if rebaseline:
            for det in self.detectors:
                det.reset()
                if isinstance(det, ReferenceDetector) and len(self.unit.reference):
                    det.set_reference(self.unit.reference)
            self._caught_up()
            self.policy.rebaseline(last_seq(self.db) if monitor_after is None else monitor_after)
            self.policy.episode = None
            if monitor_after is not None:
                self._monitor_after(monitor_after)

    def _ingest_bootstrap_data(self) -> None:
        """Ingest ``bootstrap.data`` once (a file already processed is not ingested again),
        then try to train v1 on the stored rows."""
        path = self.cfg.bootstrap.data
        if path is None:
            return
        if not path.is_file():
            raise BootstrapError(f"bootstrap.data: no such file {path}")
        batch = read_file(path, self.cfg.schema)
        done = self._processed(path)
        if done is None:
            self._after_ingest(self.ingestor.ingest(batch))
        elif self.unit is None:
            # A retry after a failed bootstrap: train on the rows stored the first time,
            # before the source is polled (its rows are the champion's to monitor).
            stat = path.stat()
            if stat.st_size != done.size or stat.st_mtime != done.mtime:
                raise BootstrapError(
                    f"bootstrap.data {path} changed since its {done.accepted} rows were stored "
                    f"({done.processed_at}); a retry trains on the stored rows, so to bootstrap "
                    "on the new file start from a fresh state_dir"
                )
            self._maybe_bootstrap()

    def _processed(self, path: Path) -> Any:
        """The ``processed_files`` row of ``path`` (size, mtime, processed_at, accepted), or
        None if it was never ingested."""
        with self.db.connect() as conn:
            return conn.execute(
                select(
                    processed_files.c.size,
                    processed_files.c.mtime,
                    processed_files.c.processed_at,
                    processed_files.c.accepted,
                ).where(processed_files.c.path == str(path))
            ).first()

    def _maybe_bootstrap(self) -> None:
        if not self.leader.is_leader():
            return  # the leader trains v1; this daemon adopts it through _follow_champion
        n = self.cfg.bootstrap.rows
        seqs, x, y = labelled_rows(self.db, len(self.features), since=0)
        if len(seqs) < n:
            self.report(f"bootstrap: {len(seqs)}/{n} labelled rows collected")
            return
        seqs, x, y = seqs[:n], x[:n], y[:n]
        version = bootstrap_from_rows(
            self.cfg,
            self.db,
            self.events,
            self.registry,
            x,
            y,
            first_row=int(seqs[0]),
            last_row=int(seqs[-1]),
            source=self._bootstrap_source(n),
            report=self.report,
        )
        self._adopt(version, rebaseline=True, monitor_after=int(seqs[-1]))

    def _monitor_after(self, after: int) -> None:
        """Feed the detectors the rows stored after row ``after`` (v1's last bootstrap row),
        in order.

        They came in the same batch as the bootstrap's last rows (a file, or a broker
        batch, longer than ``bootstrap.rows``) or while v1 trained; without this they were
        counted as seen and never monitored, so a drift in a backlog went unnoticed.
        """
        assert self.monitor is not None
        n = 0
        while True:
            seqs, x, y = rows_after(self.db, len(self.features), after, REPLAY_ROWS)
            if not len(seqs):
                break
            self._observe(seqs, x, self.monitor.score(x, y))
            after, n = int(seqs[-1]), n + len(seqs)
            self._maybe_request_retrain()
        if n:
            self.report(f"bootstrap: monitoring the {n} rows stored after v1's training rows")

    def _bootstrap_source(self, n: int) -> str:
        """Where v1's first ``n`` rows came from, for its metadata: ``bootstrap.data``
        (ingested before the source is polled) and/or the stream."""
        path = self.cfg.bootstrap.data
        if path is None:
            return "stream"
        done = self._processed(path)
        accepted = 0 if done is None else int(done.accepted)
        if accepted >= n:
            return f"bootstrap.data {path}"
        return f"bootstrap.data {path} ({accepted} rows) and the stream"

    # -- service: leadership, the API's rows, systemd ------------------------------------
    def _lead(self) -> bool:
        """Poll leadership; on gaining it re-run orphaned retrains, on losing it stop ours."""
        was = self.leader.is_leader()
        now = self.leader.poll()
        if now and not was:
            n = self.requests.requeue()
            self.report(f"leader: {self.leader.instance} leads now ({n} retrain(s) requeued)")
            log.warning("this daemon (%s) is the leader now", self.leader.instance)
        elif was and not now and self.runner.running:
            trigger = self.runner.trigger_id
            self.runner.cancel()
            self.policy.retrain_done()
            self.requests.set_status(trigger, "cancelled")
            self.report(f"leader: lost leadership; retrain {trigger} left to the new leader")
        return now

    def submit(self, acc: Accepted) -> None:
        """Rows the API stored, for the detectors (drained by :meth:`step`)."""
        if not self.inbox.put(acc):
            log.warning("monitoring queue full: %d row(s) stored but not monitored", acc.count)

    def _drain_inbox(self) -> bool:
        queued = self.inbox.drain()
        if not queued:
            return False
        self._after_ingest(merge(queued, len(self.features)))
        return True

    def runtime_status(self) -> dict[str, Any]:
        """Live facts of this process (the API's status and metrics)."""
        return {
            "instance": self.leader.instance,
            "leader": self.leader.is_leader(),
            "rows_seen": self.rows_seen,
            "source": self.source.name,
            "source_lag": source_lag(self.source),
            "retrain_running": self.runner.trigger_id if self.runner.running else None,
            "monitor_queue_rows": self.inbox.rows,
            "monitor_dropped_rows": self.inbox.dropped,
            "detectors": {
                name: {
                    "signal": sig.signal,
                    "statistic": _num(sig.statistic),
                    "threshold": _num(sig.threshold),
                    "drift": bool(sig.drift),
                }
                for name, sig in list(self.last_signals.items())
            },
        }

    def _ping_watchdog(self) -> None:
        if self._watchdog is not None and time.monotonic() - self._last_ping >= self._watchdog:
            notify("WATCHDOG=1")
            self._last_ping = time.monotonic()

    # -- housekeeping --------------------------------------------------------------------
    def retention(self) -> None:
        with self._lock:
            removed = self.registry.prune(
                keep_candidates=self.cfg.scheduler.keep_candidates,
                protect=self.gatekeeper.protected(),
            )
            if removed:
                log.info("retention removed %d old candidate(s): %s", len(removed), removed)

    def _labelled_positions(self, seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Labelled rows by number with their class positions (shadow and watch resume)."""
        s, x, y = self._rows_by_seq(seqs)
        assert self.monitor is not None
        return s, x, self.monitor.class_index(y)

    def _rows_by_seq(self, seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lo, hi = int(seqs.min()), int(seqs.max())
        s, x, y = labelled_rows(self.db, len(self.features), since=lo, upto=hi)
        keep = np.isin(s, seqs)
        return s[keep], x[keep], y[keep]

    def _close_source(self) -> None:
        self.source.close()

    def _make_source(self, cursor: int) -> Source:
        seen: set[FileStamp] = set()
        if isinstance(self.cfg.source, DirectorySourceConfig):
            with self.db.connect() as conn:
                seen = {
                    FileStamp(p, s, m)
                    for p, s, m in conn.execute(
                        select(
                            processed_files.c.path, processed_files.c.size, processed_files.c.mtime
                        )
                    )
                }
        return build_source(self.cfg.source, self.cfg.schema, cursor, seen)

    def _load_state(self) -> dict[str, Any]:
        with self.db.connect() as conn:
            row = conn.execute(select(kv.c.value).where(kv.c.key == self.state_key)).first()
        if row is None:
            return {}
        state = from_json(row[0])
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            log.warning("ignoring saved daemon state of an unknown version")
            return {}
        return state

    def _replay(self, saved: dict[str, Any]) -> None:
        """Feed the restored detectors what was stored after the saved state's last row
        and late label.

        State is saved every 30 s; after a crash (``kill -9``) the rows stored and
        acknowledged since then, and the late labels joined since then (to those rows or
        to earlier ones), are fed again in the order they were stored, each late label
        after the rows stored before it, and before any new row, so no monitoring is lost.
        A row whose label came late is fed without it (its label is fed where it was
        joined); labels joined before the save are not fed again. The restored policy
        decides on their alarms again; an alarm the crashed daemon had logged since the
        save (same detector, same action, in order) keeps its ``drift.detected`` event
        and so its retrain trigger (``drift-<event id>``, idempotent in the queue): a
        replay never logs a drift twice nor retrains twice. Not with ``leader:``: the
        stored rows are every daemon's, not this one's.
        """
        after = saved.get("seq")
        if after is None or self.cfg.leader is not None or self.monitor is None:
            self._caught_up()
            return
        # a state saved before late labels were numbered: every numbered one came after it
        rows_at, labels_at = int(after), int(saved.get("label_seq", 0))
        self._logged_alarms = self._alarms_since(saved)
        n_rows = n_labels = 0
        try:
            while True:
                late = late_labels_after(self.db, len(self.features), labels_at, REPLAY_ROWS)
                due = late.after_seq <= rows_at  # joined before the next row was stored
                k = len(due) if due.all() else int(np.argmin(due))
                upto = int(late.after_seq[0]) if len(due) else None
                if k:
                    self._labels_joined(late.rows[:k], late.x[:k], late.y[:k])
                    labels_at, n_labels = int(late.seq[k - 1]), n_labels + k
                else:
                    seqs, x, y = rows_after(self.db, len(self.features), rows_at, REPLAY_ROWS, upto)
                    if len(seqs):
                        self._observe(seqs, x, self.monitor.score(x, y))
                        rows_at, n_rows = int(seqs[-1]), n_rows + len(seqs)
                    elif upto is None:
                        break
                    else:  # no row between: the label is due
                        rows_at = upto
                self._maybe_request_retrain()
        finally:
            self._logged_alarms = {}
        # busy is not saved: a queued retrain sets it again when it starts
        self.policy.busy = False
        self.seen_seq = max(self.seen_seq, rows_at)
        self.seen_label_seq = max(self.seen_label_seq, labels_at)
        if n_rows or n_labels:
            log.warning(
                "fed the detectors %d stored row(s) after row %d and %d late label(s) again",
                n_rows,
                int(after),
                n_labels,
            )
            self.report(
                f"replayed {n_rows} stored rows after row {after} and {n_labels} late labels"
                " (not monitored before)"
            )

    def _alarms_since(self, saved: dict[str, Any]) -> dict[str, list[ev.Event]]:
        """The alarms logged since the state was saved, by detector, oldest first (a state
        saved without the last event's id: those on rows after its last row)."""
        event = saved.get("event")
        logged: dict[str, list[ev.Event]] = {}
        for e in self.events.list(
            kinds=[ev.DRIFT_DETECTED],
            model_version=self._champion(),
            after_id=None if event is None else int(event),
        ):
            if event is not None or int(e.payload.get("row") or 0) > int(saved["seq"]):
                logged.setdefault(str(e.payload.get("detector")), []).append(e)
        return logged

    def _caught_up(self) -> None:
        """Count every stored row and late label as handled: the detectors start after
        them (re-baselined, or restored without a replay), so a replay after a later crash
        must not feed them."""
        self.seen_seq = max(self.seen_seq, last_seq(self.db))
        self.seen_label_seq = max(self.seen_label_seq, last_late_label(self.db))

    def _restore_detectors(self, saved: dict[str, Any]) -> None:
        states = saved.get("detectors", {})
        for det in self.detectors:
            if det.name in states:
                try:
                    det.load_state(states[det.name])
                except (ValueError, KeyError) as err:
                    log.warning("detector %s state not restored: %s", det.name, err)
        if "policy" in saved:
            self.policy.load_state(saved["policy"])

    def _save_state(self) -> None:
        cursor = self.source.cursor
        state = {
            "version": STATE_VERSION,
            "cursor": cursor,
            "seq": self.seen_seq,
            "label_seq": self.seen_label_seq,
            "event": self.events.last_id(),  # alarms after it are logged after this save
            "champion": self._champion(),
            "policy": self.policy.state(),
            "detectors": {d.name: d.state() for d in self.detectors},
        }
        blob = to_json(state)
        with self.db.begin() as conn:
            write_trace(conn, self.trace_key, self.trace)
            if conn.execute(select(kv.c.key).where(kv.c.key == self.state_key)).first() is None:
                conn.execute(kv.insert(), [{"key": self.state_key, "value": blob}])
            else:
                conn.execute(update(kv).where(kv.c.key == self.state_key).values(value=blob))
        self._last_save = time.monotonic()


def _num(v: float | None) -> float | None:
    if v is None or not np.isfinite(v):
        return None
    return float(v)
