"""The daemon: source → ingest → monitor → detectors → policy → retrain → gate → registry.

All work happens in :meth:`Daemon.step`, one batch at a time: one burst over a finite source
(``--until-drained``, the tests) or forever on APScheduler's interval. The daemon hands
work over: rows to the detectors (:mod:`runtime.monitoring.feed`), alarms to
:mod:`runtime.monitoring.alarms`, retrains to :mod:`runtime.training.retrains` (a child
process; monitoring goes on meanwhile unless the source has ``block_on_retrain``),
candidates to the gatekeeper. Saved state and crash replay are
:mod:`runtime.monitoring.recovery`'s, v1 :mod:`runtime.training.first_version`'s; the
caller builds the API server and hands it to :meth:`Daemon.run`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import torch

from detectors.base import Detector
from runtime.config import DriftloopConfig
from runtime.handoff.workers import Handoff
from runtime.intake.inbox import Inbox, merge
from runtime.intake.ingest import Accepted, Ingestor
from runtime.intake.kinds import open_source
from runtime.intake.schema_state import resolved
from runtime.intake.sources import Batch, Source, source_lag
from runtime.monitoring.alarms import Alarms
from runtime.monitoring.backlog import Backlog
from runtime.monitoring.columns import ColumnDetectors
from runtime.monitoring.estimate import EstimateWatch
from runtime.monitoring.feed import DetectorFeed
from runtime.monitoring.monitor import Monitor
from runtime.monitoring.policy import Policy
from runtime.monitoring.recovery import STATE_KEY, Recovery
from runtime.monitoring.trace import TRACE_KEY, load_trace
from runtime.monitoring.triggers import STATE_KEY as TRIGGERS_KEY
from runtime.monitoring.triggers import Champion, Triggers, served_accuracy
from runtime.promotion.gatekeeper import LIVE_KEY, Gatekeeper
from runtime.service.scheduler import Scheduler, next_fire
from runtime.service.stopping import StopOnSignal
from runtime.service.systemd import Watchdog, notify
from runtime.store import estimated, estimated_mae, served
from runtime.store import events as ev
from runtime.store import leader as leadership
from runtime.store.db import Database, parse_ts
from runtime.store.events import EventLog
from runtime.store.lock import StateLock, lock_dir
from runtime.store.retrain_queue import RequestQueue
from runtime.store.rows import ingested_at, labelled_rows_by_seq
from runtime.store.unit import Unit, load_unit
from runtime.store.versions import Registry
from runtime.training.first_version import FirstVersion
from runtime.training.retrains import STOPPING, Retrains
from runtime.training.worker import Outcome, RetrainRunner

log = logging.getLogger(__name__)
SAVE_SECONDS = 30.0  # how often the monitoring state is saved while running


class Server(Protocol):
    """What :meth:`Daemon.run` needs of the API server it is handed."""

    url: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Daemon:
    def __init__(
        self,
        cfg: DriftloopConfig,
        *,
        clock: Callable[[], datetime] | None = None,
        report: Callable[[str], None] | None = None,
        lock: StateLock | None = None,
    ) -> None:
        """``lock``: the state's lock, taken already (the CLI takes it before its heavy
        imports, so that a second daemon refuses at once)."""
        self.cfg = cfg
        self.features = list(cfg.schema.features)
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database.for_state_dir(
            cfg.state_dir, cfg.database_url, synchronous=cfg.sqlite_synchronous
        )
        self.db.create_all()
        self.events = EventLog(self.db, clock)
        self.requests = RequestQueue(self.db, self.events)
        self.registry = Registry(self.db, cfg.state_dir / "models", self.events)
        self.ingestor = Ingestor(self.db, cfg.schema, self.events)
        self.leader: leadership.Leadership = leadership.build(self.db, cfg.leader)
        instance = None if cfg.leader is None else self.leader.instance
        self.lock = lock or StateLock(lock_dir(cfg.state_dir, instance))
        suffix = "" if instance is None else f":{instance}"  # the kv keys of this daemon's own
        self.trace_key = TRACE_KEY + suffix
        self.inbox = Inbox(cfg.api.monitor_queue_rows if cfg.api else 200_000)
        self._watchdog = Watchdog()
        self.policy = Policy(cfg.policy)
        self.columns = ColumnDetectors(cfg.detectors, self.features, cfg.schema_detectors)
        self.detectors: list[Detector] = []
        self.columns.sync(self.detectors, resolved(self.db, cfg.schema)[0], rebuild=False)
        self.feed = DetectorFeed(self.detectors, self.features, load_trace(self.db, self.trace_key))
        self.runner = RetrainRunner(cfg.state_dir / "retrain", cfg.retrain.timeout_seconds)
        self.report: Callable[[str], None] = report or (lambda line: None)
        db, events, registry, report = self.db, self.events, self.registry, self.report
        self.triggers = self._build_triggers(suffix, clock)
        shared = instance is not None  # the stored rows are every daemon's
        self.recovery = Recovery(db, events, self.features, STATE_KEY + suffix, shared,
                                 numeric=cfg.schema.numeric_label)
        self.backlog = Backlog(db, len(self.features),  # rows stored while a retrain runs
                               numeric=cfg.schema.numeric_label)
        self.alarms = Alarms(cfg, db, events, self.policy, self.requests, report, self.runner.warm,
                             self.triggers, self._champion_info, lambda: self.recovery.seq)
        self.retrains = Retrains(cfg, registry, events, self.requests, self.runner, report)
        self.first = FirstVersion(cfg, db, events, registry, self.leader.is_leader, report)
        self.stop_event = threading.Event()
        self._lock = threading.RLock()
        self.unit: Unit | None = None
        live_key = LIVE_KEY + suffix
        self.gatekeeper = Gatekeeper(cfg, registry, events, report, db=db, state_key=live_key)
        self.monitor: Monitor | None = None
        self.estimate = EstimateWatch(cfg.policy.estimate, self.events, self.report,
                                      "estimate" + suffix)
        self.source: Source = open_source(cfg.source, cfg.schema, self.db, cursor=0)
        self.rows_seen = 0
        self._last_save = time.monotonic()

    # -- lifecycle -------------------------------------------------------------------
    def open(self) -> None:
        """Take the lock, restore state, record ``daemon.started``."""
        self.lock.acquire()
        torch.set_num_threads(self.cfg.torch_threads)  # the daemon owns its process
        saved = self.recovery.load()
        self._reopen_source(saved)
        requeued = self.requests.requeue() if self.leader.poll(force=True) else 0
        self.runner.warm()  # its imports take seconds: pay them before the first drift
        champion = self.registry.champion()
        if champion is None:
            self._ingest_bootstrap_data()
            champion = self.registry.champion()
        if champion is not None and self.unit is None:
            self._adopt(champion, rebaseline=saved.get("champion") != champion)
            if saved.get("champion") == champion:
                self.recovery.resume(saved, champion, self.feed, self._observe, self.alarms,
                                     self._held_after, self.backlog.hold)
        if self.unit is not None:  # a shadow or watch the last daemon left running
            self.gatekeeper.resume(self.unit, self._labelled_positions)
        self.gatekeeper.recover([v.version for v in self.registry.list()])
        started = ev.DaemonStarted(state_dir=str(self.cfg.state_dir), champion=champion,
                                   source=self.source.name, requeued_retrains=requeued,
                                   detectors=tuple(d.name for d in self.detectors))
        self.events.append(ev.DAEMON_STARTED, started, model_version=champion)

    def close(self, reason: str = "stopped") -> None:
        """Cancel a running retrain (recorded), save state, record ``daemon.stopped``."""
        with self._lock:
            self.retrains.cancel(STOPPING)
            self.runner.close()
            self._save_state()
            stopped = ev.DaemonStopped(reason=reason, rows_seen=self.rows_seen)
            self.events.append(ev.DAEMON_STOPPED, stopped, model_version=self.registry.champion())
            self.source.close()
            self.leader.close()
            self.lock.release()
            self.db.dispose()

    def run(self, until_drained: bool = False, server: Server | None = None) -> None:
        """Run until stopped (SIGTERM/SIGINT) or, with ``until_drained``, until the source
        is exhausted and no retrain is pending; ``server`` (the API) serves meanwhile."""
        with StopOnSignal(self.stop_event, on_force=self.runner.kill):
            self._run(until_drained, server)

    def _run(self, until_drained: bool, server: Server | None) -> None:
        # exports and hooks follow what is committed, in threads of their own
        handoff = Handoff(self.cfg, self.db, self.events, self.registry,
                          is_leader=self.leader.is_leader)
        self.open()
        reason = "stopped by signal"
        try:
            handoff.start()
            if server is not None:
                server.start()
                self.report(f"API on {server.url}")
            notify(f"READY=1\nSTATUS=running; champion {self._champion()}")
            if until_drained:
                reason = self._run_until_drained() or reason
            else:
                sched = Scheduler()
                sched.every(self.cfg.scheduler.tick_seconds, self.step, "step")
                sched.every(self.cfg.scheduler.retention_seconds, self.retention, "retention")
                sched.run_until(self.stop_event)
        finally:
            notify("STOPPING=1")
            if server is not None:
                server.stop()  # no row is acknowledged after this
            self.inbox.close()
            with self._lock:
                self._drain_inbox()
            handoff.stop()
            self.close(reason)

    def _run_until_drained(self) -> str | None:
        while not self.stop_event.is_set():
            did = self.step()
            if self.drained():
                return "drained"
            if not did:
                self.stop_event.wait(0.05)
        return None

    def bootstrap(self) -> str:
        """Train v1 (``driftloop bootstrap``): from ``bootstrap.data`` if set, else from
        the source's first rows. Refuses if there is a champion already."""
        with self.lock:
            self.first.refuse_if_trained()
            self._reopen_source(self.recovery.load())
            self._ingest_bootstrap_data()
            done = lambda: self.unit is not None  # noqa: E731
            self.first.collect(self.source, self.ingestor.ingest, self._after_ingest, done)
            self._save_state()
            assert self.unit is not None
            return self.unit.version

    def drained(self) -> bool:
        return self.source.exhausted() and not self._retraining() and not self.backlog

    def _held_after(self) -> int | None:
        """The row after which stored rows wait for the gate: the pending retrain's."""
        pending = self.requests.next_pending()
        return None if pending is None else int(pending.get("upto") or 0)

    def _retraining(self) -> bool:
        """A retrain runs or waits."""
        return self.runner.running or self.requests.next_pending() is not None

    # -- one step ----------------------------------------------------------------------
    def step(self) -> bool:
        """Do one unit of work; returns False when there was nothing to do."""
        with self._lock:
            self._watchdog.ping()
            did = self._manage_retrain() if self._lead() else False
            self._follow_champion()
            if self.backlog and not self._retraining():  # the gate has decided
                did = self._release_backlog() or did
            blocked = self.source.blocks_on_retrain and self._retraining()
            if not blocked:
                batch = self.source.poll()
                if batch is not None:
                    accepted = self.ingestor.ingest(batch)
                    self.source.ack(batch)
                    self._after_ingest(accepted)
                    did = True
            did = self._drain_inbox() or did
            if self.triggers is not None and self.unit is not None and self.leader.is_leader():
                self.alarms.maybe_request_retrain(self._champion())  # the clock's triggers
            if time.monotonic() - self._last_save > SAVE_SECONDS:
                self._save_state()
            return did

    def _after_ingest(self, acc: Accepted) -> None:
        self.rows_seen += acc.count
        if self.unit is None:
            self._handled(acc)
            self._maybe_bootstrap()
        elif self.backlog or self._retraining():  # the gate decides who watches them
            self.backlog.hold(acc)
            if acc.count:
                self.report(f"ingest  rows={self.rows_seen:>7}  held={self.backlog.rows}"
                            " (a retrain runs)")
        else:
            self._monitor(acc)

    def _handled(self, acc: Accepted) -> None:
        self.recovery.handled(int(acc.seqs.max()) if acc.count else 0, acc.label_seq)

    def _release_backlog(self) -> bool:
        """Feed the rows held while the retrain ran to the champion the gate left, up to
        the next retrain request."""
        n = self.backlog.release(self._monitor, self._retraining)
        if n:
            left = f", {self.backlog.rows} still held" if self.backlog else ""
            self.report(f"monitored {n} rows stored while the retrain ran{left}")
        return True

    def _monitor(self, acc: Accepted) -> None:
        """Stored rows (and the late labels they joined) to the detectors, the shadow and
        the rollback watch; then ask whether a retrain is due."""
        assert self.unit is not None
        self._handled(acc)
        if acc.count:
            self._observe(acc.seqs, acc.x, acc.y)
            self._live(acc.seqs, acc.x, acc.y)
        if len(acc.labels_joined):
            seqs, x, y = labelled_rows_by_seq(self.db, len(self.features), acc.labels_joined,
                                              numeric=self.cfg.schema.numeric_label)
            self._observe(seqs, x, y, late=True)
            self._live(seqs, x, y)
        self.alarms.maybe_request_retrain(self._champion())
        if self.rows_seen and acc.count:
            self.report(f"ingest  rows={self.rows_seen:>7}  champion={self.unit.version}")

    def _observe(self, seqs: np.ndarray, x: np.ndarray, y: np.ndarray, late: bool = False) -> None:
        """Stored rows to the detectors, their alarms to :attr:`alarms`; ``late``: labels
        joined to rows stored earlier (the signals that needed them)."""
        assert self.monitor is not None
        champion, sig = self._champion(), self.monitor.score(x, y)
        if not late and champion is not None:  # what it served, for the realized score
            with self.db.begin() as conn:
                served.record(conn, seqs, sig.prediction.astype(np.float64), champion)
                if self.estimate.cfg.enabled and sig.calibrated is not None:
                    estimated.record(conn, seqs, sig.calibrated.max(axis=1), champion)
                    estimated.record_probabilities(conn, seqs, sig.calibrated, champion)
                if sig.expected_error is not None:
                    estimated_mae.record(conn, seqs, sig.expected_error, champion)
            if sig.calibrated is not None:  # the label-free estimate and its alert
                unlabelled = self.monitor.class_index(y) < 0
                self.estimate.observe(seqs, sig.calibrated, unlabelled, champion)
        for alarm in self.feed.observe(seqs, None if late else x, sig, champion, late):
            self.alarms.handle(alarm, champion)

    def _live(self, seqs: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
        """Labelled rows for the shadow comparison and the rollback watch."""
        if self.unit is None or self.monitor is None:
            return
        changed = self.gatekeeper.observe(seqs, x, self.monitor.class_index(y), self.unit)
        if changed is not None:
            self._adopt(changed, rebaseline=True)

    # -- retrain and gate ----------------------------------------------------------------
    def _manage_retrain(self) -> bool:
        """Finish the running retrain once it is done, or start the next one."""
        done = self.retrains.poll()
        if done is not None:
            self._finish_retrain(*done)
            return True
        if self.runner.running or self.unit is None or not self.retrains.start_next(self.unit):
            return False
        self.policy.busy = True
        return True

    def _finish_retrain(self, trigger: str, out: Outcome) -> None:
        self.policy.retrain_done()
        if not self.retrains.record(trigger, out, leading=self.leader.poll(force=True)):
            return
        promoted = self.gatekeeper.judge(trigger, out.result, self.unit)
        result = {"candidate": out.result["candidate"], "passed": bool(promoted)}
        self.requests.set_status(trigger, "finished", result)  # before adopting (slow)
        if promoted is not None:
            self._adopt(promoted, rebaseline=True)
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
        after the last row fed to them and are fed the held rows next (none held: after
        the last stored row), or with ``monitor_after`` after that row, fed every row
        stored since, in order; the new starting point is saved at once."""
        self.unit = load_unit(self.registry, self.cfg, version)
        self.monitor = Monitor(self.unit.model, self.cfg.schema.class_values,
                               self.unit.calibration, regression=self.cfg.task == "regression",
                               loss=self.unit.loss_model)
        self.estimate.reset(self.unit.calibration.error, version)
        schema = resolved(self.db, self.cfg.schema)[0]  # types inferred from stored rows
        self.columns.sync(self.detectors, schema, rebuild=rebaseline)
        if rebaseline:
            self.feed.rebaseline(self.unit.reference)
            if not self.backlog:
                self.recovery.caught_up()
            self.policy.rebaseline(self.recovery.seq if monitor_after is None else monitor_after)
            self.policy.episode = None
            if monitor_after is not None:  # rows stored in v1's last batch or while it trained
                n = self.recovery.feed_after(monitor_after, self._observe, self.alarms, version)
                if n:
                    self.report(f"bootstrap: monitoring the {n} rows stored after v1's rows")
            # saved now, not at the next periodic save: a kill -9 before it would make the
            # next daemon re-baseline after every stored row and never monitor them
            self._save_state()

    def _ingest_bootstrap_data(self) -> None:
        """``bootstrap.data`` stored once, then v1 trained on the stored rows if it can."""
        if self.first.ingest_data(self._ingest_batch, waiting=self.unit is None):
            self._maybe_bootstrap()

    def _ingest_batch(self, batch: Batch) -> None:
        self._after_ingest(self.ingestor.ingest(batch))

    def _maybe_bootstrap(self) -> None:
        trained = self.first.maybe_train()
        if trained is not None:
            version, last_row = trained
            self._adopt(version, rebaseline=True, monitor_after=last_row)
            if self.triggers is not None:  # v1's rows are not new labelled rows
                self.triggers.start_after(last_row)

    # -- triggers besides drift ----------------------------------------------------------
    def _build_triggers(
        self, suffix: str, clock: Callable[[], datetime] | None
    ) -> Triggers | None:
        tcfg = self.cfg.policy.triggers
        if not tcfg.kinds:
            return None
        now = clock or (lambda: datetime.now(UTC))
        sched = tcfg.schedule
        fire = None if sched is None else next_fire(sched.every, sched.cron, now())
        return Triggers(tcfg, self.db, TRIGGERS_KEY + suffix, clock=now, next_fire=fire,
                        accuracy=served_accuracy(self.db, self._champion,
                                                 lambda: self.policy.baseline_row + 1))

    def _champion_info(self, version: str | None) -> Champion | None:
        """The champion's age and that of its newest training row (the age trigger)."""
        if version is None:
            return None
        mv = self.registry.get(version)
        last = (mv.meta.get("data") or {}).get("last_row")
        until = None if last is None else ingested_at(self.db, int(last))
        return Champion(version, parse_ts(mv.created_at), until)

    # -- leadership, the API's rows, housekeeping -----------------------------------------
    def _lead(self) -> bool:
        """Poll leadership; on gaining it re-run orphaned retrains, on losing it stop ours."""
        was = self.leader.is_leader()
        now = self.leader.poll()
        if self.retrains.leadership(was, now, self.leader.instance):
            self.policy.retrain_done()
        return now

    def submit(self, acc: Accepted) -> None:
        """Rows the API stored, for the detectors (drained by :meth:`step`)."""
        self.inbox.put(acc)

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
            "held_rows": self.backlog.rows,  # stored while a retrain ran, not yet monitored
            "monitor_queue_rows": self.inbox.rows,
            "monitor_dropped_rows": self.inbox.dropped,
            "detectors": self.feed.status(),
        }

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
        s, x, y = labelled_rows_by_seq(self.db, len(self.features), seqs,
                                       numeric=self.cfg.schema.numeric_label)
        assert self.monitor is not None
        return s, x, self.monitor.class_index(y)

    def _reopen_source(self, saved: dict[str, Any]) -> None:
        """The source again, at the saved state's cursor."""
        self.source.close()
        cursor = int(saved.get("cursor", 0))
        self.source = open_source(self.cfg.source, self.cfg.schema, self.db, cursor)

    def _save_state(self) -> None:
        cursor, champion = self.source.cursor, self._champion()
        self.recovery.save(cursor, champion, self.policy, self.feed, self.trace_key)
        self._last_save = time.monotonic()

