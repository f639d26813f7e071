"""Reviewing a candidate: integrity, evidence, the gate, and an operator's approval.

:func:`review` never raises for a bad candidate: a champion or candidate whose files do
not match their recorded sha256, or evaluation evidence that is missing or altered, is a
failed gate decision with the reason in plain words. :func:`approve` and :func:`reject`
settle a candidate that passed the gate in ``manual`` mode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from runtime.promotion.evidence import Evidence, EvidenceError, read_evidence
from runtime.promotion.gate import GateDecision, evaluate, refused
from runtime.promotion.settings import GateConfig
from runtime.store import events as ev
from runtime.store.events import Event, EventLog
from runtime.store.versions import IntegrityError, Registry

__all__ = [
    "AWAIT_APPROVAL",
    "ReviewError",
    "approvals",
    "approve",
    "awaiting_approval",
    "load_evidence",
    "reject",
    "review",
]

AWAIT_APPROVAL = "await approval"


class ReviewError(ValueError):
    """An approval or rejection that cannot be done; the message says why."""


def load_evidence(result: Mapping[str, Any]) -> Evidence:
    """The evidence the retrain child reported in its result (EvidenceError if unusable)."""
    info = result.get("evidence")
    if not isinstance(info, Mapping) or "path" not in info:
        raise EvidenceError("the retrain reported no evaluation evidence")
    return read_evidence(Path(str(info["path"])), info.get("sha256"))


def review(
    registry: Registry,
    cfg: GateConfig,
    result: Mapping[str, Any],
    champion: str | None,
    expected_golden: Sequence[str],
) -> tuple[GateDecision, Evidence | None]:
    """Check both versions' files, read the evidence, apply the gate."""
    candidate = str(result.get("candidate"))
    for role, version in (("champion", champion), ("candidate", candidate)):
        if version is None:
            continue
        try:
            registry.verify(version)
        except (IntegrityError, KeyError) as err:
            reason = f"the {role} {version} failed its integrity check: {err}"
            return refused(reason, cfg, name=f"integrity:{role}"), None
    try:
        evidence = load_evidence(result)
    except EvidenceError as err:
        return refused(str(err), cfg), None
    return evaluate(evidence, cfg, expected_golden), evidence


def _gate_event(events: EventLog, version: str) -> Event | None:
    found = events.list(kinds=[ev.GATE_PASSED, ev.GATE_FAILED], model_version=version)
    return found[-1] if found else None


def _awaiting(registry: Registry, events: EventLog) -> list[tuple[str, Event]]:
    out = []
    for mv in registry.list():
        if mv.status != "candidate" or "pruned_at" in mv.meta:
            continue
        last = _gate_event(events, mv.version)
        if (
            last is not None
            and last.kind == ev.GATE_PASSED
            and last.payload_as(ev.Gate).next == AWAIT_APPROVAL
        ):
            out.append((mv.version, last))
    return out


def awaiting_approval(registry: Registry, events: EventLog) -> list[str]:
    """Candidates that passed the gate and wait for ``driftloop approve`` or ``reject``."""
    return [version for version, _ in _awaiting(registry, events)]


def _stale(version: str, gate: Event, champion: str | None) -> str | None:
    """Why :func:`approve` refuses ``version``: the champion changed since its gate."""
    gated = gate.payload_as(ev.Gate).champion
    if gated == champion:
        return None
    return (
        f"{version} was gated against {gated}, but the champion is now {champion}: "
        "its evidence is stale; reject it and let a new retrain run"
    )


def approvals(registry: Registry, events: EventLog) -> dict[str, str | None]:
    """Every candidate awaiting approval → why :func:`approve` would refuse it (its
    evidence is stale; it can still be rejected), or None where it can be approved."""
    champion = registry.champion()
    return {v: _stale(v, gate, champion) for v, gate in _awaiting(registry, events)}


def _pending(registry: Registry, events: EventLog, version: str) -> Event:
    try:
        mv = registry.get(version)
    except KeyError:
        raise ReviewError(f"there is no model version {version!r}") from None
    last = _gate_event(events, version)
    if mv.status != "candidate" or last is None or last.kind != ev.GATE_PASSED:
        raise ReviewError(
            f"{version} is not awaiting approval (status {mv.status}; "
            f"last gate decision: {last.kind if last else 'none'})"
        )
    said = last.payload_as(ev.Gate).next
    if said != AWAIT_APPROVAL:
        raise ReviewError(f"{version} is not awaiting approval (its gate said: {said})")
    return last


def approve(registry: Registry, events: EventLog, version: str, who: str = "an operator") -> Event:
    """Promote a candidate awaiting approval; refuses if the champion changed since its gate."""
    gate = _pending(registry, events, version)
    stale = _stale(version, gate, registry.champion())
    if stale is not None:
        raise ReviewError(stale)
    return registry.promote(
        version,
        ev.ModelPromoted(
            trigger_id=gate.payload_as(ev.Gate).trigger_id,
            reason=f"gate passed and approved by {who}",
            gate_event=gate.id,
        ),
    )


def reject(
    registry: Registry, events: EventLog, version: str, reason: str, who: str = "an operator"
) -> Event:
    """Refuse a candidate awaiting approval; records a ``gate.failed`` saying who and why."""
    gate = _pending(registry, events, version)
    registry.set_status(version, "refused")
    text = f"Rejected by {who}: {reason.strip() or 'no reason given'}."
    gated = gate.payload_as(ev.Gate)
    return events.append(
        ev.GATE_FAILED,
        ev.Gate(
            trigger_id=gated.trigger_id,
            candidate=version,
            champion=gated.champion,
            passed=False,
            reasons=(text,),
            rejected_by=who,
            gate_event=gate.id,
        ),
        model_version=version,
    )
