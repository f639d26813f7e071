"""What happens to a finished candidate: the gate, the promotion mode, shadow and watch.

The daemon hands every finished retrain to :meth:`Gatekeeper.judge` and every labelled
live row to :meth:`Gatekeeper.observe`. Modes (``gate.mode``):

- ``auto``: promote on pass;
- ``manual``: on pass the candidate waits for ``driftloop approve`` / ``reject``;
- ``shadow``: on pass the candidate scores live labelled rows next to the champion for
  ``gate.shadow_rows`` rows; the gate then decides again with those rows as its new data.

After every promotion the rollback watch (:mod:`runtime.watch`) compares the new champion
with its predecessor on the next labelled rows and rolls back on a significant rise in
errors. Shadow and watch live in memory: a restart refuses a candidate caught in shadow
(:meth:`Gatekeeper.recover`) and does not resume a watch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from runtime import events as ev
from runtime.config import DriftloopConfig
from runtime.events import EventLog
from runtime.evidence import NEW_DATA, Evidence
from runtime.gate import GateDecision, evaluate
from runtime.registry import Registry
from runtime.review import AWAIT_APPROVAL, awaiting_approval, review
from runtime.unit import Unit, load_unit
from runtime.watch import PairedLive, worse_than_before

__all__ = ["Gatekeeper"]

SHADOW = "shadow"


@dataclass(frozen=True)
class _ShadowContext:
    trigger: str
    evidence: Evidence
    expected: tuple[str, ...]


class Gatekeeper:
    """Turns gate decisions into promotions, approvals, shadow runs and rollbacks."""

    def __init__(
        self,
        cfg: DriftloopConfig,
        registry: Registry,
        events: EventLog,
        report: Callable[[str], None],
    ) -> None:
        self.cfg = cfg
        self.registry = registry
        self.events = events
        self.report = report
        self.shadow: PairedLive | None = None
        self._shadow_ctx: _ShadowContext | None = None
        self.watch: PairedLive | None = None

    # -- after a retrain -----------------------------------------------------------------
    def judge(self, trigger: str, result: Mapping[str, Any], champion: Unit | None) -> str | None:
        """Gate a finished candidate; returns the new champion's version if it was promoted."""
        candidate = str(result["candidate"])
        expected = tuple(champion.golden_index) if champion else ()
        version = champion.version if champion else None
        decision, evidence = review(self.registry, self.cfg.gate, result, version, expected)
        mode = self.cfg.gate.mode
        if not decision.passed:
            nxt = "refuse"
        elif mode == "manual":
            nxt = AWAIT_APPROVAL
        elif mode == SHADOW and champion is not None:
            nxt = SHADOW
        else:
            nxt = "promote"
        self._announce(trigger, candidate, version, decision, nxt, stage="holdout")
        if nxt == "refuse":
            self.registry.set_status(candidate, "refused")
            self.report(f"gate refused {candidate}; champion stays {version}")
            return None
        if nxt == AWAIT_APPROVAL:
            self.report(
                f"{candidate} passed the gate and awaits approval: "
                f"driftloop approve {candidate}  |  driftloop reject {candidate}"
            )
            return None
        if nxt == SHADOW and champion is not None and version is not None and evidence:
            model = load_unit(self.registry, self.cfg, candidate).model
            self.shadow = PairedLive(
                version, candidate, champion.model, model, self.cfg.gate.shadow_rows
            )
            self._shadow_ctx = _ShadowContext(trigger, evidence, expected)
            self.report(
                f"{candidate} passed the gate; shadowing the champion for "
                f"{self.cfg.gate.shadow_rows} labelled rows"
            )
            return None
        return self._promote(candidate, trigger, decision, champion)

    def _announce(
        self,
        trigger: str,
        candidate: str,
        champion: str | None,
        decision: GateDecision,
        nxt: str,
        stage: str,
    ) -> None:
        payload = {
            "trigger_id": trigger,
            "candidate": candidate,
            "champion": champion,
            "mode": self.cfg.gate.mode,
            "stage": stage,
            "next": nxt,
            **decision.to_dict(),
        }
        kind = ev.GATE_PASSED if decision.passed else ev.GATE_FAILED
        self.events.append(kind, payload, model_version=candidate)
        for c in decision.checks:
            self.report(f"  gate check {c.name:<14} {'pass' if c.passed else 'FAIL'}  {c.reason}")

    def _promote(
        self, candidate: str, trigger: str, decision: GateDecision, champion: Unit | None
    ) -> str:
        self.registry.promote(
            candidate,
            {"trigger_id": trigger, "reason": "gate passed", "gate": decision.to_dict()},
        )
        self.report(f"promoted {candidate} (was {champion.version if champion else None})")
        if champion is not None:
            self._start_watch(champion.version, champion.model, candidate)
        return candidate

    # -- live labelled rows --------------------------------------------------------------
    def observe(
        self, seqs: npt.NDArray[np.int64], x: Any, y_pos: npt.NDArray[np.int64], champion: Unit
    ) -> str | None:
        """Feed labelled rows to shadow and watch; returns a new champion's version, if any."""
        if self.shadow is not None:
            if self.shadow.reference_version != champion.version:
                self._void_shadow(f"the champion changed to {champion.version} during the shadow")
            else:
                self.shadow.add(seqs, x, y_pos)
                if self.shadow.full:
                    return self._finish_shadow(champion)
        if self.watch is not None:
            if self.watch.challenger_version != champion.version:
                self.watch = None
            else:
                self.watch.add(seqs, x, y_pos)
                if self.watch.full:
                    return self._finish_watch()
        return None

    def _finish_shadow(self, champion: Unit) -> str | None:
        assert self.shadow is not None and self._shadow_ctx is not None
        live, ctx = self.shadow, self._shadow_ctx
        self.shadow, self._shadow_ctx = None, None
        rows = live.as_set(NEW_DATA, "live labelled traffic scored in shadow")
        evidence = replace(ctx.evidence, sets={**ctx.evidence.sets, NEW_DATA: rows})
        decision = evaluate(evidence, self.cfg.gate, ctx.expected)
        candidate = live.challenger_version
        nxt = "promote" if decision.passed else "refuse"
        self._announce(ctx.trigger, candidate, champion.version, decision, nxt, stage=SHADOW)
        if not decision.passed:
            self.registry.set_status(candidate, "refused")
            self.report(f"shadow refused {candidate}; champion stays {champion.version}")
            return None
        return self._promote(candidate, ctx.trigger, decision, champion)

    def _void_shadow(self, why: str) -> None:
        assert self.shadow is not None
        candidate, champion = self.shadow.challenger_version, self.shadow.reference_version
        trigger = self._shadow_ctx.trigger if self._shadow_ctx else None
        self.shadow, self._shadow_ctx = None, None
        self.refuse(candidate, champion, trigger, f"The shadow comparison was void: {why}.")

    def refuse(self, candidate: str, champion: str | None, trigger: str | None, text: str) -> None:
        """Refuse ``candidate`` outside the gate's checks (void shadow, restart)."""
        self.registry.set_status(candidate, "refused")
        self.events.append(
            ev.GATE_FAILED,
            {
                "trigger_id": trigger,
                "candidate": candidate,
                "champion": champion,
                "passed": False,
                "checks": [],
                "reasons": [text],
                "next": "refuse",
            },
            model_version=candidate,
        )
        self.report(f"refused {candidate}: {text}")

    # -- the rollback watch --------------------------------------------------------------
    def _start_watch(self, predecessor: str, old_model: Any, new_version: str) -> None:
        if self.cfg.watch.rows <= 0:
            self.watch = None
            return
        new_model = load_unit(self.registry, self.cfg, new_version).model
        self.watch = PairedLive(predecessor, new_version, old_model, new_model, self.cfg.watch.rows)

    def _finish_watch(self) -> str | None:
        assert self.watch is not None
        live, self.watch = self.watch, None
        evidence = worse_than_before(live, self.cfg.watch.alpha)
        if evidence is None:
            self.report(
                f"watch over: {live.challenger_version} is not worse than "
                f"{live.reference_version} on {live.rows} live rows"
            )
            return None
        self.registry.rollback(
            live.reference_version,
            reason=f"automatic: live error rate rose after promotion. {evidence['summary']}",
            evidence=evidence,
        )
        self.report(
            f"rolled back {live.challenger_version} → {live.reference_version}: "
            f"{evidence['summary']}"
        )
        return live.reference_version

    def followed(self, version: str) -> None:
        """The champion changed outside the daemon: watch it if an approval promoted it."""
        last = self.events.list(
            kinds=[ev.MODEL_PROMOTED, ev.MODEL_ROLLED_BACK], descending=True, limit=1
        )
        self.watch = None
        if not last or last[0].kind != ev.MODEL_PROMOTED or last[0].model_version != version:
            return
        previous = last[0].payload.get("previous_champion")
        if isinstance(previous, str):
            old = load_unit(self.registry, self.cfg, previous).model
            self._start_watch(previous, old, version)

    # -- housekeeping --------------------------------------------------------------------
    def protected(self) -> frozenset[str]:
        """Versions retention must keep: the candidate in shadow and those awaiting approval."""
        shadow = {self.shadow.challenger_version} if self.shadow else set()
        return frozenset(shadow | set(awaiting_approval(self.registry, self.events)))

    def recover(self, pending: Sequence[str]) -> None:
        """Refuse candidates a previous daemon left in shadow (the comparison is lost)."""
        for version in pending:
            found = self.events.list(kinds=[ev.GATE_PASSED, ev.GATE_FAILED], model_version=version)
            last = found[-1] if found else None
            if (
                last is not None
                and last.kind == ev.GATE_PASSED
                and last.payload.get("next") == SHADOW
                and self.registry.get(version).status == "candidate"
            ):
                self.refuse(
                    version,
                    last.payload.get("champion"),
                    last.payload.get("trigger_id"),
                    "The daemon stopped during the shadow comparison; "
                    "a new retrain will produce a new candidate.",
                )
