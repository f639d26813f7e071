"""Typed event payloads: one frozen dataclass per event kind, parsed once when read.

The stored JSON object is the contract (the database holds it, the API serves it, hooks
send it), so a payload writes exactly the keys its writer means: an optional field left
at its default is left out. Reading is tolerant, because state directories outlive the
code that wrote them: a missing key takes its field's default, a key the dataclass does
not know is kept in ``extra`` and written back, and a kind with no dataclass reads as
:class:`Unknown`. ``SCHEMA`` is the shape's version: bump it when a field changes meaning
and keep reading the older shape by its defaults.

The field metadata helpers (``opt``, ``key``, ``presence``) and the JSON mapping live in
:mod:`runtime.store.payload_base`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime.store.payload_base import OMIT, Payload, key, opt, presence

__all__ = [
    "PAYLOADS",
    "DaemonStarted",
    "DaemonStopped",
    "DriftDetected",
    "Gate",
    "GateCheck",
    "GateVerdict",
    "HookDelivered",
    "HookFailed",
    "IngestRejected",
    "LabelsRequested",
    "ModelPromoted",
    "ModelRolledBack",
    "Payload",
    "RejectedRow",
    "RetrainFailed",
    "RetrainFinished",
    "RetrainProgress",
    "RetrainRequested",
    "RetrainStarted",
    "StageFinished",
    "Unknown",
    "parse",
]

# -- nested objects ------------------------------------------------------------------------
@dataclass(frozen=True)
class GateCheck(Payload):
    """One gate check (:class:`runtime.promotion.gate.Check` as stored)."""

    name: str = ""
    metric: str = ""
    champion: float | None = None
    candidate: float | None = None
    threshold: str = ""
    passed: bool = False
    reason: str = ""
    n: int | None = None
    numbers: dict[str, float | None] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GateVerdict(Payload):
    """A gate decision (:meth:`runtime.promotion.gate.GateDecision.to_dict`)."""

    passed: bool = False
    checks: tuple[GateCheck, ...] = key("checks", (), items=GateCheck)
    reasons: tuple[str, ...] = ()
    confidence: float | None = opt()
    test: str | None = opt()
    false_refusal_risk: float | None = None
    has_risk: bool = presence("false_refusal_risk", True)
    noise: str | None = opt()
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RejectedRow(Payload):
    """One example row of an ``ingest.rejected`` event."""

    row: int | None = None
    reason: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


# -- the kinds -----------------------------------------------------------------------------
@dataclass(frozen=True)
class DaemonStarted(Payload):
    """``daemon.started``: where, with which champion, source and detectors."""

    state_dir: str = ""
    champion: str | None = None
    source: str = ""
    requeued_retrains: int = 0
    detectors: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DaemonStopped(Payload):
    """``daemon.stopped``: why, and how many rows this run saw."""

    reason: str = ""
    rows_seen: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IngestRejected(Payload):
    """``ingest.rejected``: rows of one batch refused, counted by reason, with examples."""

    source: str = ""
    accepted: int = 0
    rejected: int = 0
    whole_file: bool = False
    reasons: dict[str, int] = field(default_factory=dict)
    examples: tuple[RejectedRow, ...] = key("examples", (), items=RejectedRow)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DriftDetected(Payload):
    """``drift.detected``: what a detector saw and what the policy decided.

    ``details`` is the detector's own (its keys depend on the detector); ``report`` the
    drift report's path under the state directory (``report_path`` in older states).
    """

    detector: str = ""
    signal: str = ""
    statistic: float | None = None
    threshold: float | None = None
    index: int | None = None
    onset: int | None = None
    window: tuple[int, ...] | None = None
    row: int = 0
    action: str = ""
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    report: str | None = opt()
    report_path: str | None = opt()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def report_file(self) -> str | None:
        """The drift report's path, whichever key names it."""
        return self.report or self.report_path


@dataclass(frozen=True)
class RetrainRequested(Payload):
    """``retrain.requested``: the rows to retrain on and what asked for it."""

    trigger_id: str = ""
    onset: int = 0
    upto: int = 0
    detector: str | None = None
    labelled_rows: int = 0
    alarm_row: int | None = None
    reason: str | None = opt()
    trigger: str | None = opt()
    """What asked: ``drift``, ``schedule``, ``labelled_rows``, ``accuracy_floor``,
    ``max_age``, ``all`` (several at once) or ``manual``; older states leave it out
    (:attr:`kind` reads it from the trigger id then)."""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The trigger's kind, from ``trigger`` or else the id's prefix."""
        if self.trigger:
            return self.trigger
        head = self.trigger_id.split("-", 1)[0]
        return head if head in {"drift", "manual"} else "drift" if self.detector else "manual"


@dataclass(frozen=True)
class RetrainStarted(Payload):
    """``retrain.started``: champion → candidate, the rows and the strategy."""

    trigger_id: str = ""
    champion: str | None = None
    candidate: str = ""
    onset: int = 0
    upto: int = 0
    strategy: str = ""
    world_size: int | None = opt()  # set when retrain.distributed launches workers
    backend: str | None = opt()
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RetrainProgress(Payload):
    """``retrain.progress``: one epoch of a training run (a retrain, a stage or the
    bootstrap, which measures no validation accuracy: ``validated`` False)."""

    trigger_id: str = ""
    epoch: int = 0
    step: int = 0
    samples: int = 0
    loss: float = 0.0
    seconds: float = 0.0
    val_accuracy: float | None = None
    validated: bool = presence("val_accuracy", True)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RetrainFinished(Payload):
    """``retrain.finished``: the candidate and how its training went."""

    trigger_id: str = ""
    candidate: str = ""
    samples: int = 0
    steps: int | None = opt()
    epochs: int = 0
    seconds: float = 0.0
    final_loss: float | None = None
    stopped_by: str | None = None
    resumed_from_epoch: int | None = opt()
    device: str | None = opt()
    rows_train: int = 0
    rows_holdout: int = 0
    wall_seconds: float | None = opt()
    world_size: int | None = opt()
    backend: str | None = opt()
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RetrainFailed(Payload):
    """``retrain.failed``: why; ``cancelled`` (the daemon stopped it, it runs again) or
    ``interrupted`` (its daemon died during every attempt, it is not run again)."""

    trigger_id: str | None = None
    reason: str = ""
    seconds: float | None = opt()
    attempts: int | None = opt()
    cancelled: bool = opt(False)
    interrupted: bool = opt(False)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Gate(Payload):
    """``gate.passed`` / ``gate.failed``: the verdict on a candidate and what comes next.

    A refusal outside the checks (a void shadow, a person's rejection) carries no
    ``mode``, ``stage``, ``confidence`` or ``test``; a rejection names ``rejected_by``
    and the ``gate_event`` it decides.
    """

    trigger_id: str | None = None
    candidate: str = ""
    champion: str | None = None
    mode: str | None = opt()
    stage: str | None = opt()
    next: str | None = opt()
    passed: bool = False
    checks: tuple[GateCheck, ...] = key("checks", (), items=GateCheck)
    reasons: tuple[str, ...] = ()
    confidence: float | None = opt()
    test: str | None = opt()
    false_refusal_risk: float | None = None
    has_risk: bool = presence("false_refusal_risk", False)
    noise: str | None = opt()
    rejected_by: str | None = opt()
    gate_event: int | None = opt()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, verdict: Mapping[str, Any], **about: Any) -> Gate:
        """A gate event from a decision's JSON form and the fields about it."""
        return cls.from_json({**about, **verdict})

    @property
    def verdict(self) -> GateVerdict:
        """The decision alone (what ``model.promoted`` carries as ``gate``)."""
        return GateVerdict(
            passed=self.passed, checks=self.checks, reasons=self.reasons,
            confidence=self.confidence, test=self.test,
            false_refusal_risk=self.false_refusal_risk, has_risk=self.has_risk,
            noise=self.noise,
        )


@dataclass(frozen=True)
class ModelPromoted(Payload):
    """``model.promoted``: why the version became champion, and which it replaced.

    ``metrics`` are the bootstrap's or the adoption's (their keys depend on which),
    ``stages`` those of a staged bootstrap; ``adopted`` the lineage of a model trained
    outside driftloop.
    """

    reason: str = ""
    previous_champion: str | None = None
    trigger_id: str | None = opt()
    gate: GateVerdict | None = field(default=None, metadata={**OMIT, "nested": GateVerdict})
    gate_event: int | None = opt()
    by: str | None = opt()
    metrics: dict[str, Any] | None = field(default=None, metadata=OMIT)
    adopted: dict[str, Any] | None = field(default=None, metadata=OMIT)
    stages: tuple[str, ...] | None = opt()
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelRolledBack(Payload):
    """``model.rolled_back``: from which champion to which, and why (the watch's
    ``evidence`` when it was automatic)."""

    from_: str | None = key("from", None)
    to: str = ""
    reason: str = ""
    evidence: dict[str, Any] | None = field(default=None, metadata=OMIT)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StageFinished(Payload):
    """``stage.finished``: one training stage (or the bootstrap, which has no ``index``,
    ``missed`` or checkpoint) and its metrics against its exit criteria."""

    stage: str = ""
    index: int | None = opt()
    passed: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)
    exit_criteria: dict[str, Any] = field(default_factory=dict)
    missed: tuple[str, ...] | None = opt()
    checkpoint: str | None = opt()
    sha256: str | None = opt()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def accuracy(self) -> Any:
        """The validation accuracy (``val_accuracy`` of the bootstrap, ``accuracy`` of a
        stage)."""
        return self.metrics.get("val_accuracy", self.metrics.get("accuracy"))


@dataclass(frozen=True)
class HookDelivered(Payload):
    """``hook.delivered``: which hook sent which event, after how many attempts."""

    hook: str = ""
    event_id: int = 0
    kind: str = ""
    trigger: str = ""
    attempts: int = 0
    status: int | None = opt()
    exit: int | None = opt()
    seconds: float | None = opt()
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HookFailed(Payload):
    """``hook.failed``: a hook gave up on an event; why."""

    hook: str = ""
    event_id: int = 0
    kind: str = ""
    trigger: str = ""
    attempts: int = 0
    reason: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LabelsRequested(Payload):
    """``labels.requested``: the rows worth labelling first (least confident first), and
    the estimate that asked for them."""

    rows: tuple[int, ...] = ()
    reason: str = ""
    estimated_accuracy: float | None = None
    low: float | None = None
    high: float | None = None
    threshold: float | None = None
    window: tuple[int, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Unknown(Payload):
    """A kind this code does not know (a newer writer's): the object as stored."""

    extra: Mapping[str, Any] = field(default_factory=dict)


PAYLOADS: dict[str, type[Payload]] = {
    "daemon.started": DaemonStarted,
    "daemon.stopped": DaemonStopped,
    "ingest.rejected": IngestRejected,
    "drift.detected": DriftDetected,
    "retrain.requested": RetrainRequested,
    "retrain.started": RetrainStarted,
    "retrain.progress": RetrainProgress,
    "retrain.finished": RetrainFinished,
    "retrain.failed": RetrainFailed,
    "gate.passed": Gate,
    "gate.failed": Gate,
    "model.promoted": ModelPromoted,
    "model.rolled_back": ModelRolledBack,
    "stage.finished": StageFinished,
    "hook.delivered": HookDelivered,
    "hook.failed": HookFailed,
    "labels.requested": LabelsRequested,
}
"""Event kind → its payload class."""


def parse(kind: str, data: Mapping[str, Any]) -> Payload:
    """The payload of a ``kind`` event stored as ``data``."""
    return PAYLOADS.get(kind, Unknown).from_json(data)
