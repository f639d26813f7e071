"""The leader's retrains: the next request started in the warm worker, how each one ended.

One retrain runs at a time (:class:`~runtime.training.worker.RetrainRunner`). Each start,
failure, cancellation and finish is recorded on the request (``retrain_requests``) and as
an event; what a finished candidate becomes is the gatekeeper's to decide.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from runtime.config import DriftloopConfig
from runtime.store import events as ev
from runtime.store.events import EventLog
from runtime.store.retrain_queue import RequestQueue
from runtime.store.unit import Unit
from runtime.store.versions import Registry
from runtime.training.worker import Outcome, RetrainRunner

log = logging.getLogger(__name__)
STOPPING = "cancelled: the daemon is stopping; it will run again when the daemon restarts"
"""The reason recorded for a retrain cancelled by the daemon's shutdown."""


class Retrains:
    """Starts, cancels and records the retrains of :attr:`requests` in :attr:`runner`."""

    def __init__(
        self,
        cfg: DriftloopConfig,
        registry: Registry,
        events: EventLog,
        requests: RequestQueue,
        runner: RetrainRunner,
        report: Callable[[str], None],
    ) -> None:
        self.cfg = cfg
        self.registry = registry
        self.events = events
        self.requests = requests
        self.runner = runner
        self.report = report

    def poll(self) -> tuple[str, Outcome] | None:
        """``(trigger, outcome)`` of the running retrain once it is done, else None."""
        trigger = self.runner.trigger_id
        outcome = self.runner.poll()
        return None if outcome is None else (str(trigger), outcome)

    def start_next(self, champion: Unit) -> bool:
        """Start the oldest pending request from ``champion``, its candidate the next
        version; False if none is pending."""
        req = self.requests.next_pending()
        if req is None:
            return False
        self._start(req, champion.version)
        return True

    def _start(self, req: dict[str, Any], champion: str) -> None:
        trigger = req["trigger_id"]
        candidate = self.registry.next_version()
        spec = {
            "config": self.cfg.model_dump(mode="json", by_alias=True),
            "config_hash": self.cfg.config_hash(),  # the daemon's, whatever the child parses
            "trigger_id": trigger,
            "champion": champion,
            "candidate": candidate,
            "onset": req["onset"],
            "upto": req["upto"],
        }
        started = ev.RetrainStarted(
            trigger_id=trigger,
            champion=champion,
            candidate=candidate,
            onset=req["onset"],
            upto=req["upto"],
            strategy=self.cfg.retrain.strategy.kind,
            **self._world(),
        )
        self.requests.start(trigger, started, candidate)
        self.runner.start(trigger, spec)
        self.report(f"retrain started    {trigger}  {champion} → {candidate}")

    def _world(self) -> dict[str, Any]:
        """``world_size`` and ``backend`` of a retrain on several processes, else none."""
        d = self.cfg.retrain.distributed
        if d is None or not d.active:
            return {}
        from runtime.training.distributed_job import backend

        return {"world_size": d.nproc_per_node * d.nnodes,
                "backend": backend(d, self.cfg.retrain.device)}

    def cancel(self, reason: str | None = None) -> str | None:
        """Stop the running retrain, if any, and mark its request ``cancelled`` (it runs
        again); with ``reason``, recorded as ``retrain.failed``. Returns its trigger."""
        if not self.runner.running:
            return None
        trigger = self.runner.trigger_id
        seconds = self.runner.cancel()
        self.requests.set_status(trigger, "cancelled")
        if reason is not None:
            self.events.append(
                ev.RETRAIN_FAILED,
                ev.RetrainFailed(
                    trigger_id=trigger, reason=reason, seconds=round(seconds, 3), cancelled=True
                ),
            )
        return trigger

    def leadership(self, was: bool, now: bool, instance: str) -> bool:
        """Follow a change of leadership: on gaining it, re-run the retrains a leader never
        finished; on losing it, stop ours (the new leader runs it). True if ours stopped."""
        if now and not was:
            n = self.requests.requeue()
            self.report(f"leader: {instance} leads now ({n} retrain(s) requeued)")
            log.warning("this daemon (%s) is the leader now", instance)
        elif was and not now and self.runner.running:
            trigger = self.cancel()
            self.report(f"leader: lost leadership; retrain {trigger} left to the new leader")
            return True
        return False

    def record(self, trigger: str, out: Outcome, leading: bool) -> bool:
        """Record how the retrain of ``trigger`` ended; True if its candidate is to be
        judged. Not ``leading`` (another daemon leads now and re-runs it): cancelled."""
        if not leading:
            self.requests.set_status(trigger, "cancelled")
            self.report(f"retrain {trigger} dropped: this daemon no longer leads")
            return False
        if not out.ok:
            self._failed(trigger, out)
            return False
        self._finished(trigger, out)
        return True

    def _failed(self, trigger: str, out: Outcome) -> None:
        self.requests.set_status(trigger, "failed", {"reason": out.reason})
        self.events.append(
            ev.RETRAIN_FAILED,
            ev.RetrainFailed(trigger_id=trigger, reason=out.reason, seconds=round(out.seconds, 3)),
            model_version=out.result.get("candidate"),
        )
        self.report(f"retrain failed     {trigger}: {out.reason}")

    def _finished(self, trigger: str, out: Outcome) -> None:
        """Record a retrain that produced its candidate (before the gate judges it)."""
        res = out.result
        candidate, train = res["candidate"], res["train"]
        self.events.append(
            ev.RETRAIN_FINISHED,
            ev.RetrainFinished.from_json(  # ``train`` is the job's account of its run
                {"trigger_id": trigger, "candidate": candidate, **train,
                 "wall_seconds": round(out.seconds, 3)}
            ),
            model_version=candidate,
        )
        self.report(
            f"retrain finished   {candidate}: {train['samples']} samples"
            f" in {train['seconds']:.1f} s"
        )
