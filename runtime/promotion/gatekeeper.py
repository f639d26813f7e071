"""What happens to a finished candidate: the gate, the promotion mode, shadow and watch.

The daemon hands every finished retrain to :meth:`Gatekeeper.judge` and every labelled
live row to :meth:`Gatekeeper.observe`. Modes (``gate.mode``):

- ``auto``: promote on pass;
- ``manual``: on pass the candidate waits for ``driftloop approve`` / ``reject``;
- ``shadow``: on pass the candidate scores live labelled rows next to the champion for
  ``gate.shadow_rows`` rows; the gate then decides again with those rows as its new data.

In every mode a candidate that failed only golden checks is appealed (``gate.appeal:
shadow``, :mod:`runtime.promotion.appeal`): it scores the next live labelled rows beside
the champion the same way and is promoted only if it is at least as good on them.

After every promotion the rollback watch (:mod:`runtime.promotion.watch`) compares the new champion
with its predecessor on the next labelled rows and rolls back on a significant rise in
errors. Both survive a restart: the versions, the row numbers scored so far and the
evidence's path are kept in the ``kv`` table; :meth:`Gatekeeper.resume` re-reads those rows
and re-scores them with both models, and the comparison goes on where it was. A shadow
that cannot be resumed (the champion changed, the evidence is gone) refuses its candidate
with the reason (:meth:`Gatekeeper.recover`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from runtime.config import DriftloopConfig
from runtime.promotion.appeal import APPEAL, appealable, judge_appeal
from runtime.promotion.approval import AWAIT_APPROVAL, awaiting_approval, load_evidence, review
from runtime.promotion.evidence import NEW_DATA, Evidence, EvidenceError
from runtime.promotion.gate import GateDecision, evaluate
from runtime.promotion.watch import PairedLive, load_live_state, save_live_state, worse_than_before
from runtime.store import events as ev
from runtime.store.db import Database
from runtime.store.events import EventLog
from runtime.store.unit import Unit, load_unit
from runtime.store.versions import Registry

__all__ = ["Gatekeeper"]

SHADOW = "shadow"
LIVE_KEY = "gatekeeper_state"
"""The ``kv`` key of the shadow and watch state (``:<instance>`` added under a leader)."""
STATE_VERSION = 1
Rows = Callable[[npt.NDArray[np.int64]], tuple[Any, Any, npt.NDArray[np.int64]]]
"""Row numbers → ``(seqs, x, class positions)`` of those labelled rows, from the row store."""


@dataclass(frozen=True)
class _ShadowContext:
    trigger: str
    evidence: Evidence
    expected: tuple[str, ...]
    evidence_ref: Mapping[str, Any]
    """The retrain result's ``evidence`` entry (path and sha256), to reload it on resume."""
    appeal: bool = False
    """An appeal (failed golden checks only): judged on the live rows alone."""


class Gatekeeper:
    """Turns gate decisions into promotions, approvals, shadow runs and rollbacks."""

    def __init__(
        self,
        cfg: DriftloopConfig,
        registry: Registry,
        events: EventLog,
        report: Callable[[str], None],
        db: Database | None = None,
        state_key: str = LIVE_KEY,
    ) -> None:
        self.cfg = cfg
        self.registry = registry
        self.events = events
        self.report = report
        self.db = db
        self.state_key = state_key
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
        if not decision.passed and champion is not None and evidence and appealable(
                decision, self.cfg.gate):
            nxt = APPEAL
        elif not decision.passed:
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
        if nxt in (SHADOW, APPEAL) and champion is not None and version is not None and evidence:
            self._start_shadow(trigger, result, champion, evidence, expected, nxt == APPEAL)
            return None
        return self._promote(candidate, trigger, decision, champion)

    def _start_shadow(self, trigger: str, result: Mapping[str, Any], champion: Unit,
                      evidence: Evidence, expected: tuple[str, ...], appeal: bool) -> None:
        """Score the candidate beside the champion on the next live labelled rows; a
        shadow already running is void (the newer candidate learnt newer rows)."""
        candidate = str(result["candidate"])
        if self.shadow is not None:
            self._void_shadow(f"a newer candidate, {candidate}, replaced it")
        model = load_unit(self.registry, self.cfg, candidate).model
        self.shadow = PairedLive(
            champion.version, candidate, champion.model, model, self.cfg.gate.shadow_rows
        )
        ref = result.get("evidence")
        self._shadow_ctx = _ShadowContext(
            trigger, evidence, expected, dict(ref) if isinstance(ref, Mapping) else {}, appeal
        )
        self._save()
        why = "failed only golden checks; judging it" if appeal else "passed the gate; shadowing"
        self.report(f"{candidate} {why} beside the champion on the next "
                    f"{self.cfg.gate.shadow_rows} labelled rows")

    def _announce(
        self,
        trigger: str,
        candidate: str,
        champion: str | None,
        decision: GateDecision,
        nxt: str,
        stage: str,
    ) -> None:
        payload = ev.Gate.of(
            decision.to_dict(),
            trigger_id=trigger,
            candidate=candidate,
            champion=champion,
            mode=self.cfg.gate.mode,
            stage=stage,
            next=nxt,
        )
        kind = ev.GATE_PASSED if decision.passed else ev.GATE_FAILED
        self.events.append(kind, payload, model_version=candidate)
        for c in decision.checks:
            self.report(f"  gate check {c.name:<14} {'pass' if c.passed else 'FAIL'}  {c.reason}")

    def _promote(
        self, candidate: str, trigger: str, decision: GateDecision, champion: Unit | None
    ) -> str:
        self.registry.promote(
            candidate,
            ev.ModelPromoted(
                trigger_id=trigger,
                reason="gate passed",
                gate=ev.GateVerdict.from_json(decision.to_dict()),
            ),
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
                self._save()
        if self.watch is not None:
            if self.watch.challenger_version != champion.version:
                self.watch = None
                self._save()
            else:
                self.watch.add(seqs, x, y_pos)
                if self.watch.full:
                    return self._finish_watch()
                self._save()
        return None

    def _finish_shadow(self, champion: Unit) -> str | None:
        assert self.shadow is not None and self._shadow_ctx is not None
        live, ctx = self.shadow, self._shadow_ctx
        self.shadow, self._shadow_ctx = None, None
        self._save()
        rows = live.as_set(NEW_DATA, "live labelled traffic scored in shadow")
        if ctx.appeal:
            decision = judge_appeal(ctx.evidence, rows, self.cfg.gate)
        else:
            evidence = replace(ctx.evidence, sets={**ctx.evidence.sets, NEW_DATA: rows})
            decision = evaluate(evidence, self.cfg.gate, ctx.expected)
        candidate = live.challenger_version
        manual = self.cfg.gate.mode == "manual"  # a won appeal still waits for a person
        nxt = ("refuse" if not decision.passed else AWAIT_APPROVAL if manual else "promote")
        self._announce(ctx.trigger, candidate, champion.version, decision, nxt, stage=SHADOW)
        if not decision.passed:
            self.registry.set_status(candidate, "refused")
            self.report(f"shadow refused {candidate}; champion stays {champion.version}")
            return None
        if manual:
            self.report(f"{candidate} won its shadow run and awaits approval: "
                        f"driftloop approve {candidate}  |  driftloop reject {candidate}")
            return None
        return self._promote(candidate, ctx.trigger, decision, champion)

    def _void_shadow(self, why: str) -> None:
        assert self.shadow is not None
        candidate, champion = self.shadow.challenger_version, self.shadow.reference_version
        trigger = self._shadow_ctx.trigger if self._shadow_ctx else None
        self.shadow, self._shadow_ctx = None, None
        self._save()
        self.refuse(candidate, champion, trigger, f"The shadow comparison was void: {why}.")

    def refuse(self, candidate: str, champion: str | None, trigger: str | None, text: str) -> None:
        """Refuse ``candidate`` outside the gate's checks (void shadow, restart)."""
        self.registry.set_status(candidate, "refused")
        self.events.append(
            ev.GATE_FAILED,
            ev.Gate(
                trigger_id=trigger,
                candidate=candidate,
                champion=champion,
                passed=False,
                reasons=(text,),
                next="refuse",
            ),
            model_version=candidate,
        )
        self.report(f"refused {candidate}: {text}")

    # -- the rollback watch --------------------------------------------------------------
    def _start_watch(self, predecessor: str, old_model: Any, new_version: str) -> None:
        if self.cfg.watch.rows <= 0:
            self.watch = None
            self._save()
            return
        new_model = load_unit(self.registry, self.cfg, new_version).model
        self.watch = PairedLive(predecessor, new_version, old_model, new_model, self.cfg.watch.rows)
        self._save()

    def _finish_watch(self) -> str | None:
        assert self.watch is not None
        live, self.watch = self.watch, None
        self._save()
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
        self._save()
        if not last or last[0].kind != ev.MODEL_PROMOTED or last[0].model_version != version:
            return
        previous = last[0].payload_as(ev.ModelPromoted).previous_champion
        if isinstance(previous, str):
            old = load_unit(self.registry, self.cfg, previous).model
            self._start_watch(previous, old, version)

    # -- housekeeping --------------------------------------------------------------------
    def protected(self) -> frozenset[str]:
        """Versions retention must keep: the candidate in shadow and those awaiting approval."""
        shadow = {self.shadow.challenger_version} if self.shadow else set()
        return frozenset(shadow | set(awaiting_approval(self.registry, self.events)))

    def recover(self, pending: Sequence[str]) -> None:
        """Refuse candidates a previous daemon left in shadow that :meth:`resume` could not
        pick up again (their comparison is lost)."""
        resumed = self.shadow.challenger_version if self.shadow else None
        for version in pending:
            if version == resumed:
                continue
            found = self.events.list(kinds=[ev.GATE_PASSED, ev.GATE_FAILED], model_version=version)
            last = found[-1] if found else None
            if (
                last is not None
                and (last.kind, last.payload_as(ev.Gate).next)
                in ((ev.GATE_PASSED, SHADOW), (ev.GATE_FAILED, APPEAL))
                and self.registry.get(version).status == "candidate"
            ):
                self.refuse(
                    version,
                    last.payload_as(ev.Gate).champion,
                    last.payload_as(ev.Gate).trigger_id,
                    "The daemon stopped during the shadow comparison and it could not be "
                    "resumed; a new retrain will produce a new candidate.",
                )

    # -- persistence ---------------------------------------------------------------------
    def _save(self) -> None:
        """Write the shadow and watch state to the ``kv`` table (no-op without a database)."""
        if self.db is None:
            return
        shadow = None
        if self.shadow is not None and self._shadow_ctx is not None:
            live, ctx = self.shadow, self._shadow_ctx
            shadow = {
                "candidate": live.challenger_version,
                "champion": live.reference_version,
                "wanted": live.wanted,
                "seqs": live.seq_list(),
                "trigger": ctx.trigger,
                "expected": list(ctx.expected),
                "evidence": dict(ctx.evidence_ref),
                "appeal": ctx.appeal,
            }
        watch = None
        if self.watch is not None:
            watch = {
                "champion": self.watch.challenger_version,
                "predecessor": self.watch.reference_version,
                "wanted": self.watch.wanted,
                "seqs": self.watch.seq_list(),
            }
        state = {"version": STATE_VERSION, "shadow": shadow, "watch": watch}
        save_live_state(self.db, self.state_key, state)

    def resume(self, champion: Unit, rows: Rows) -> None:
        """Pick up the shadow comparison and the watch a previous daemon left running.

        ``rows`` reads labelled rows back by row number; both models score them again (the
        models and rows are the same, so the scores are too) and the comparison goes on.
        """
        if self.db is None:
            return
        state = load_live_state(self.db, self.state_key)
        if state.get("version") != STATE_VERSION:
            return
        shadow, watch = state.get("shadow"), state.get("watch")
        if isinstance(shadow, dict):
            self._resume_shadow(shadow, champion, rows)
        if isinstance(watch, dict) and watch.get("champion") == champion.version:
            old = load_unit(self.registry, self.cfg, str(watch["predecessor"])).model
            self.watch = PairedLive(
                str(watch["predecessor"]),
                champion.version,
                old,
                champion.model,
                int(watch["wanted"]),
            )
            _rescore(self.watch, watch.get("seqs", []), rows)
            self.report(
                f"resumed the watch of {champion.version}: {self.watch.rows}/"
                f"{self.watch.wanted} labelled rows"
            )
        self._save()

    def _resume_shadow(self, saved: dict[str, Any], champion: Unit, rows: Rows) -> None:
        candidate = str(saved.get("candidate"))
        try:
            status = self.registry.get(candidate).status
        except KeyError:
            return
        if status != "candidate" or saved.get("champion") != champion.version:
            return  # recover() refuses it if its last gate event still says shadow
        try:
            evidence = load_evidence({"evidence": saved.get("evidence")})
        except EvidenceError as err:
            self.report(f"shadow of {candidate} not resumed: {err}")
            return
        model = load_unit(self.registry, self.cfg, candidate).model
        self.shadow = PairedLive(
            champion.version, candidate, champion.model, model, int(saved["wanted"])
        )
        self._shadow_ctx = _ShadowContext(
            str(saved.get("trigger")),
            evidence,
            tuple(saved.get("expected", ())),
            dict(saved.get("evidence") or {}),
            bool(saved.get("appeal", False)),
        )
        _rescore(self.shadow, saved.get("seqs", []), rows)
        self.report(
            f"resumed the shadow of {candidate}: {self.shadow.rows}/{self.shadow.wanted} "
            "labelled rows"
        )


def _rescore(live: PairedLive, seqs: Sequence[int], rows: Rows) -> None:
    """Score the rows a comparison had already seen (re-read from the row store)."""
    if seqs:
        s, x, y_pos = rows(np.asarray(seqs, dtype=np.int64))
        live.add(s, x, y_pos)
