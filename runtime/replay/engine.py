"""One replay run: the loop's own components over a logged stream, in simulated time.

The run owns a fresh state directory (a temporary one unless given) and drives the
components the daemon drives: the :class:`~runtime.intake.ingest.Ingestor` stores each
step's rows and late labels, the champion's :class:`~runtime.monitoring.monitor.Monitor`
scores them (its prediction is the one served for the row, scored against the row's true
label: prequential accuracy, or for ``task: regression`` the absolute residual, whose mean is
the prequential MAE), the detectors and the :class:`~runtime.monitoring.policy.Policy`
decide, :func:`~runtime.training.retrain_job.run_job` trains the candidate in this process,
the :class:`~runtime.promotion.gatekeeper.Gatekeeper` judges it (shadow and the rollback
watch included) and the registry promotes it. Time is the stream's position: a retrain is
ready ``retrain_rows`` rows after it was requested (0: before the next step), whatever it
cost in seconds, so a run does not depend on the machine's speed. Every seed is the
config's; the retrain's time limit is dropped when it has an epoch or step limit, so a run
repeats exactly.

What triggers retrains is the :class:`Schedule`: the config's policy (``drift``: the
detectors' alarms and ``policy.triggers``, through the daemon's own
:class:`~runtime.monitoring.alarms.Alarms`, :class:`~runtime.monitoring.triggers.Triggers`
and request queue, on the stream's clock, :mod:`runtime.replay.clock`), every ``every`` rows
(``periodic``, at most ``limit`` retrains), or nothing (``never``).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from detectors.base import Detector, ReferenceDetector
from detectors.registry import build as build_detector
from runtime.config import DriftloopConfig, ReportsConfig
from runtime.intake.ingest import Accepted, Ingestor
from runtime.intake.sources import Batch
from runtime.monitoring.alarms import Alarms
from runtime.monitoring.columns import with_column_detectors
from runtime.monitoring.feed import Alarm
from runtime.monitoring.monitor import Monitor, Signals
from runtime.monitoring.policy import Policy
from runtime.monitoring.triggers import Champion, Triggers, served_accuracy
from runtime.promotion.gatekeeper import Gatekeeper
from runtime.replay.clock import NextFireFactory, StreamClock, interval_next_fire
from runtime.replay.result import Retrain, RunResult, Schedule
from runtime.replay.stream import LoggedStream, Step
from runtime.store import events as ev
from runtime.store import served
from runtime.store.db import Database
from runtime.store.events import EventLog
from runtime.store.retrain_queue import RequestQueue
from runtime.store.rows import labelled, labelled_rows, last_labelled, last_seq
from runtime.store.unit import Unit, load_unit
from runtime.store.versions import Registry
from runtime.training.bootstrap import bootstrap_from_rows
from runtime.training.retrain_job import run_job

Report = Callable[[str], None]
__all__ = ["LoopReplay", "Report", "Retrain", "RunResult", "Schedule", "replay_config"]


def replay_config(cfg: DriftloopConfig, state_dir: Path) -> DriftloopConfig:
    """The config as a replay runs it: its own embedded state, no service, no reports
    or handoff, and no wall-clock limit on a retrain that has another limit."""
    budget = cfg.retrain.budget
    if budget.epochs is not None or budget.steps is not None:
        budget = budget.model_copy(update={"seconds": None})
    retrain = cfg.retrain.model_copy(update={"budget": budget})
    return cfg.model_copy(update={
        "state_dir": state_dir, "database_url": None, "sqlite_synchronous": "normal",
        "reports": ReportsConfig(drift_html=False), "api": None, "leader": None,
        "export": None, "hooks": [], "retrain": retrain,
    })


class LoopReplay:
    """Runs one :class:`Schedule` over a :class:`LoggedStream`."""

    def __init__(self, cfg: DriftloopConfig, stream: LoggedStream, schedule: Schedule, *,
                 batch_rows: int = 100, label_delay: int = 0, retrain_rows: int = 0,
                 report: Report | None = None, row_seconds: float = 1.0,
                 next_fire: NextFireFactory = interval_next_fire) -> None:
        """``row_seconds``: the stream's time between rows where the schema names no
        ``timestamp_column``; ``next_fire`` builds the ``schedule`` trigger's clock."""
        if batch_rows <= 0 or label_delay < 0 or retrain_rows < 0:
            raise ValueError("batch rows must be positive, label delay and retrain rows >= 0")
        self.base_cfg = cfg
        self.stream = stream
        self.schedule = schedule
        self.batch_rows = batch_rows
        self.label_delay = label_delay
        self.retrain_rows = retrain_rows
        self.report: Report = report or (lambda line: None)
        self.clock = StreamClock(len(stream), stream.timestamps(), row_seconds)
        self.next_fire = next_fire

    def run(self, state_dir: Path | None = None) -> RunResult:
        if state_dir is not None:
            return self._run(state_dir)
        with tempfile.TemporaryDirectory(prefix="driftloop-replay-") as tmp:
            return self._run(Path(tmp))

    # -- the run -----------------------------------------------------------------------
    def _run(self, state_dir: Path) -> RunResult:
        t0 = time.perf_counter()
        (state_dir / "retrain").mkdir(parents=True, exist_ok=True)  # the job's evidence
        self.cfg = cfg = replay_config(self.base_cfg, state_dir)
        torch.set_num_threads(cfg.torch_threads)
        self.features = list(cfg.schema.features)
        self.numeric = cfg.schema.numeric_label  # task: regression
        self.db = Database.for_state_dir(state_dir, None, synchronous="normal")
        self.db.create_all()
        try:
            self._setup(cfg)
            start = self._bootstrap()
            self._start_triggers(start)
            n = len(self.stream)
            self.result = RunResult(self.schedule.name, start, np.full(n, np.nan),
                                    np.full(n, -1, dtype=np.int64), [],
                                    metric="mae" if self.numeric else "accuracy")
            self._trigger_from, self._trigger_seq = start, last_seq(self.db) + 1
            for step in self.stream.steps(start, self.batch_rows, self.label_delay):
                self._step(step)
            self._finish_outcomes()
            self.result.wall_seconds = time.perf_counter() - t0
            return self.result
        finally:
            self.db.dispose()

    def _setup(self, cfg: DriftloopConfig) -> None:
        self.events = EventLog(self.db)
        self.registry = Registry(self.db, cfg.state_dir / "models", self.events)
        self.ingestor = Ingestor(self.db, cfg.schema, self.events)
        self.policy = Policy(cfg.policy)
        self.requests = RequestQueue(self.db, self.events)
        self.made: dict[str, tuple[int, int]] = {}  # version -> (made at, data up to) positions
        configs = with_column_detectors(cfg.detectors, cfg.schema, cfg.schema_detectors)
        self.detectors: list[Detector] = [build_detector(d, self.features) for d in configs]
        self.gatekeeper = Gatekeeper(cfg, self.registry, self.events, self.report, db=self.db)
        self.unit: Unit | None = None
        self.monitor: Monitor | None = None
        self.pending: tuple[int, Retrain, dict[str, Any]] | None = None
        self._ids: dict[str, int] = {}

    def _bootstrap(self) -> int:
        """Store v1's history and train v1; returns the first stream position to score."""
        cfg = self.cfg
        n = cfg.bootstrap.rows
        if cfg.bootstrap.data is not None:
            history = LoggedStream.read([cfg.bootstrap.data], cfg.schema)
            self.ingestor.ingest(Batch(origin="replay:bootstrap.data", frame=history.frame))
            start = 0
        else:
            self.ingestor.ingest(self.stream.bootstrap_batch(n))
            start = n
        seqs, x, y = labelled_rows(self.db, len(self.features), since=0, numeric=self.numeric)
        version = bootstrap_from_rows(cfg, self.db, self.events, self.registry, x[:n], y[:n],
                                      first_row=int(seqs[0]), last_row=int(seqs[:n][-1]),
                                      source="replay", report=self.report)
        self._adopt(version)
        self.made[version] = (start - 1, start - 1)
        return start

    def _start_triggers(self, start: int) -> None:
        """The daemon's alarm handling and its triggers besides drift, on the stream's
        clock (standing at the bootstrap's last row); v1's rows are not new rows."""
        self.clock.advance(start - 1)
        tcfg = self.cfg.policy.triggers
        self.triggers: Triggers | None = None
        if tcfg.kinds and self.schedule.kind == "drift":
            sched = tcfg.schedule
            fire = None if sched is None else self.next_fire(sched.every, sched.cron,
                                                              self.clock.now())
            self.triggers = Triggers(tcfg, self.db, clock=self.clock.now, next_fire=fire,
                                     accuracy=served_accuracy(
                                         self.db, self._champion_or_none,
                                         lambda: self.policy.baseline_row + 1))
            self.triggers.start_after(last_seq(self.db))
        self.alarms = Alarms(self.cfg, self.db, self.events, self.policy, self.requests,
                             self.report, lambda: None, self.triggers, self._champion_info)

    def _step(self, step: Step) -> None:
        if self.pending is not None and step.start >= self.pending[0]:
            self._finish_retrain()
        self.clock.advance(step.stop - 1)
        acc = self.ingestor.ingest(step.rows)
        assert self.monitor is not None
        sig = self.monitor.score(acc.x, acc.y)
        self._served(step, acc, sig)
        watch = self.schedule.kind == "drift"
        if acc.count and watch:
            self._observe(acc.seqs, acc.x, sig)
        if acc.count:
            self._live(acc.seqs, acc.x, acc.y)
        if step.labels is not None:
            joined = self.ingestor.ingest(step.labels).labels_joined
            if len(joined):
                seqs, x, y = self._rows_by_seq(joined)
                if watch:
                    self._observe(seqs, None, self.monitor.score(x, y), streaming_only=True)
                self._live(seqs, x, y)
        if watch:
            self._maybe_request_retrain(step)
        elif self.schedule.kind == "periodic":
            self._maybe_periodic(step)
        if self.pending is not None and self.retrain_rows == 0:
            self._finish_retrain()  # ready before the next step

    def _served(self, step: Step, acc: Accepted, sig: Signals) -> None:
        """Record the champion's prediction for each accepted row against its true label,
        and in the ``served`` table as the daemon does (its realized accuracy is then the
        run's prequential accuracy over the rows whose label has come)."""
        if not acc.count:
            return
        with self.db.begin() as conn:
            served.record(conn, acc.seqs, sig.prediction.astype(np.float64), self._champion())
        r = self.result
        if not r.versions or r.versions[-1] != self._champion():
            r.versions.append(self._champion())
        frame_ids = step.rows.frame[self.cfg.schema.id_column].tolist()
        pos = {rid: step.start + i for i, rid in enumerate(frame_ids)}
        at = np.array([pos[rid] for rid in acc.row_ids], dtype=np.int64)
        truth = self.stream.y[at]
        r.correct[at] = (np.abs(sig.prediction - truth) if self.numeric
                         else (sig.prediction == truth).astype(np.float64))
        r.served[at] = len(r.versions) - 1

    # -- monitoring (the daemon's per-batch path) -------------------------------------
    def _observe(self, seqs: npt.NDArray[np.int64], x: npt.NDArray[np.float64] | None,
                 sig: Signals, streaming_only: bool = False) -> None:
        for det in self.detectors:
            if det.signal == "features":
                if streaming_only or x is None:
                    continue
                det.update(x, seqs)
            elif det.signal in ("error", "loss", "confidence"):
                if streaming_only and det.signal == "confidence":
                    continue
                values = sig.get(det.signal)
                keep = ~np.isnan(values)
                if not keep.any():
                    continue
                det.update(values[keep], seqs[keep])
            else:
                if streaming_only or x is None:
                    continue
                det.update(x[:, self.features.index(det.signal)], seqs)
            s = det.check()
            if s.drift:
                self.result.alarms += 1
                row = int(s.index if s.index is not None else seqs[-1])
                self.alarms.handle(Alarm(det, s, row), self._champion())

    def _live(self, seqs: npt.NDArray[np.int64], x: npt.NDArray[np.float64],
              y: npt.NDArray[np.int64]) -> None:
        """Labelled rows for the shadow comparison and the rollback watch."""
        if not self.schedule.gate or self.unit is None or self.monitor is None:
            return
        keep = labelled(y)
        if not keep.any():
            return
        changed = self.gatekeeper.observe(seqs[keep], x[keep],
                                          self.monitor.class_index(y[keep]), self.unit)
        if changed is not None:
            self._adopt(changed)

    def _rows_by_seq(self, seqs: npt.NDArray[np.int64]
                     ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64],
                                npt.NDArray[np.int64]]:
        s, x, y = labelled_rows(self.db, len(self.features), since=int(seqs.min()),
                                upto=int(seqs.max()), numeric=self.numeric)
        keep = np.isin(s, seqs)
        return s[keep], x[keep], y[keep]

    # -- retrains ----------------------------------------------------------------------
    def _maybe_request_retrain(self, step: Step) -> None:
        """The daemon's request (a drift episode with its rows, or a trigger that is due),
        then the oldest pending request starts when no retrain is running."""
        self.alarms.maybe_request_retrain(self._champion())
        if self.pending is not None:
            return
        req = self.requests.next_pending()
        if req is not None:
            self.requests.set_status(req["trigger_id"], "running")
            self._retrain(req["trigger_id"], int(req["onset"]), step, int(req["upto"]))

    def _maybe_periodic(self, step: Step) -> None:
        s = self.schedule
        done = len(self.result.retrains)
        if self.pending is not None or (s.limit is not None and done >= s.limit):
            return
        if step.stop < self._trigger_from + (done + 1) * s.every:
            return  # the k-th retrain is due at k * every rows after the bootstrap
        upto = last_seq(self.db)  # rows whose label comes later go to the next retrain
        onset, self._trigger_seq = self._trigger_seq, last_labelled(self.db, upto) + 1
        self._retrain(f"periodic-{done + 1}", onset, step, upto)

    def _retrain(self, trigger: str, onset: int, step: Step, upto: int) -> None:
        assert self.unit is not None
        self.policy.busy = True
        spec = {"trigger_id": trigger, "champion": self.unit.version,
                "candidate": self.registry.next_version(), "onset": onset,
                "upto": upto, "config_hash": self.cfg.config_hash()}
        t0 = time.perf_counter()
        res = run_job(self.cfg, spec)
        wall = time.perf_counter() - t0
        meta = self.registry.get(res["candidate"]).meta["data"]
        rec = Retrain(trigger, res["candidate"], step.stop - 1, step.stop + self.retrain_rows,
                      onset, int(meta["first_row"]), int(meta["last_row"]), int(meta["rows"]),
                      float(res["train"]["seconds"]), wall)
        self.result.retrains.append(rec)
        self.made[rec.candidate] = (rec.ready_at, rec.requested_at)
        self.pending = (rec.ready_at, rec, res)
        self.report(f"retrain {trigger} at row {rec.requested_at}: {rec.candidate} on "
                    f"{rec.rows} rows ({rec.train_seconds:.1f} s)")

    def _finish_retrain(self) -> None:
        assert self.pending is not None
        _, rec, res = self.pending
        self.pending = None
        self.policy.retrain_done()
        self.requests.set_status(rec.trigger, "finished")
        if self.schedule.gate:
            promoted = self.gatekeeper.judge(rec.trigger, res, self.unit)
        else:
            self.registry.promote(rec.candidate, {"trigger_id": rec.trigger,
                                                  "reason": "replay schedule: no gate"})
            promoted = rec.candidate
        if promoted is not None:
            self._adopt(promoted)

    def _finish_outcomes(self) -> None:
        promoted = self._promoted_before()
        refused = {e.model_version: e for e in self.events.list(kinds=[ev.GATE_FAILED])}
        for rec in self.result.retrains:
            if rec.candidate in promoted:
                rec.outcome = "promoted"
            elif rec.candidate in refused:
                rec.outcome = "refused"
                checks = refused[rec.candidate].payload_as(ev.Gate).checks
                rec.failed_checks = [c.name for c in checks if not c.passed]
            elif rec.ready_at < len(self.stream):
                rec.outcome = "awaiting"
        self.result.rollbacks = len(self.events.list(kinds=[ev.MODEL_ROLLED_BACK]))

    def _promoted_before(self) -> set[str | None]:
        return {e.model_version for e in self.events.list(kinds=[ev.MODEL_PROMOTED])}

    # -- champion ----------------------------------------------------------------------
    def _champion(self) -> str:
        return self.unit.version if self.unit else "-"

    def _champion_or_none(self) -> str | None:
        return self.unit.version if self.unit else None

    def _champion_info(self, version: str | None) -> Champion | None:
        """The age trigger's view of ``version``, in the stream's time: made when its
        retrain was ready, its newest row the one its retrain was requested at."""
        if version is None or version not in self.made:
            return None
        made, data = self.made[version]
        return Champion(version, self.clock.at(made), self.clock.at(data))

    def _adopt(self, version: str) -> None:
        """The daemon's re-baseline: the new champion scores, detectors start afresh on
        its reference window, the policy's warm-up starts again."""
        self.unit = load_unit(self.registry, self.cfg, version)
        self.monitor = Monitor(self.unit.model, self.cfg.schema.class_values,
                               regression=self.numeric)
        for det in self.detectors:
            det.reset()
            if isinstance(det, ReferenceDetector) and len(self.unit.reference):
                det.set_reference(self.unit.reference)
        self.policy.rebaseline(last_seq(self.db))
        self.policy.episode = None
