"""Settings of a retrain that runs on several processes (``retrain.distributed``).

The retrain child launches ``nproc_per_node`` workers with ``torch.distributed.run``
(standalone on one host unless a rendezvous endpoint is given); each runs the same loop
with the model in ``DistributedDataParallel`` (:mod:`strategies.distributed`). The batch
size is per process: the effective batch is ``batch_size × nproc_per_node × nnodes``,
the learning rate is used as given.

Also the regression task's settings and what a ``task: regression`` config cannot have.
Pure pydantic (no numpy, no torch), so :mod:`runtime.config` composes them without
importing what trains. A regression model has one output in target units; what assumes
classes (class-balanced buffers, distillation of class probabilities, a Fisher of the
cross-entropy, accuracy rules) is refused at load with a one-line reason.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DistributedConfig(BaseModel):
    """``retrain.distributed``: how many workers, which backend, how they meet."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nproc_per_node: int = Field(default=1, ge=1)
    """Workers on this host; 1 keeps the single-process retrain (no launcher)."""
    backend: Literal["gloo", "nccl", "auto"] = "auto"
    """``auto``: nccl when the retrain trains on CUDA, else gloo."""
    nnodes: int = Field(default=1, ge=1)
    rdzv_backend: str | None = None
    """Passed to ``torch.distributed.run --rdzv_backend`` (a cluster's rendezvous)."""
    rdzv_endpoint: str | None = None
    """Passed to ``--rdzv_endpoint``; needed when ``nnodes`` > 1."""
    max_restarts: int = Field(default=0, ge=0)
    """Restarts of all workers after one fails; each restart resumes from the last epoch
    checkpoint. 0: the first failure fails the retrain, naming the rank."""
    timeout_seconds: float = Field(default=60.0, gt=0)
    """The process group's timeout: a collective that waits longer raises, never hangs."""

    @model_validator(mode="after")
    def _rendezvous(self) -> DistributedConfig:
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError(
                f"nnodes {self.nnodes} needs rdzv_endpoint (host:port every node reaches)"
            )
        return self

    @property
    def active(self) -> bool:
        """Whether workers are launched (more than one process in all)."""
        return self.nproc_per_node * self.nnodes > 1

    def backend_for(self, device: str) -> str:
        """The backend for workers training on ``device`` (``cpu`` or ``cuda[:N]``)."""
        if self.backend != "auto":
            return self.backend
        return "nccl" if device.startswith("cuda") else "gloo"


def refusal(strategy: Any, device: str, distributed: DistributedConfig | None) -> str | None:
    """Why ``strategy`` cannot train under ``distributed`` (one line), or ``None``.

    EWC's Fisher (computed on every rank from the same buffer rows and starting weights),
    LwF's teacher (a per-rank copy run on each rank's own batch), DER's stored logits
    (handed to every worker with the buffer) and EMA (of weights DDP keeps identical)
    are the same on every rank, so they train as they do on one process
    (tests/strategies/test_distributed.py). What changes the trainable parameters
    after the model is wrapped, or is not yet shown correct, is refused.
    """
    if distributed is None or not distributed.active:
        return None
    adapt = strategy.adapt
    if adapt.unfreeze_every is not None:
        return (
            "retrain.distributed: strategy.adapt.unfreeze_every changes the trainable "
            "parameters between epochs, which DistributedDataParallel fixes once; "
            "drop it or train on one process"
        )
    if adapt.lora is not None:
        return (
            "retrain.distributed: strategy.adapt.lora (peft) is not shown correct "
            "under DistributedDataParallel yet; train LoRA on one process"
        )
    if distributed.backend == "nccl" and device == "cpu":
        return "retrain.distributed: backend nccl needs retrain.device cuda (or auto)"
    if distributed.backend == "gloo" and device.startswith("cuda"):
        return (
            "retrain.distributed: backend gloo with retrain.device cuda is not "
            "supported here; use nccl or auto"
        )
    return None


class RegressionConfig(BaseModel):
    """How a ``task: regression`` model trains (bootstrap and retrains alike)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    loss: Literal["mse", "huber"] = "mse"
    """``huber``: squared within ``huber_delta`` target SDs, linear beyond."""
    huber_delta: float = Field(default=1.0, gt=0)


_CLASS_STRATEGIES = {
    "lwf": "distils the old model's class probabilities",
    "ewc": "weighs parameters by the cross-entropy's Fisher information",
}


def regression_problem(cfg: Any) -> str | None:
    """Why the ``task: regression`` config ``cfg`` (a :class:`runtime.config.DriftloopConfig`,
    typed loosely: this module sits below it) cannot work, or None; one line each."""
    rules, strategy = cfg.gate.rules or (), cfg.retrain.strategy
    checks = [
        (
            strategy.kind in _CLASS_STRATEGIES,
            f"retrain.strategy {strategy.kind} {_CLASS_STRATEGIES.get(strategy.kind)}: it needs "
            "task: classification (use replay, der, finetune or joint)",
        ),
        (
            getattr(strategy, "loss", "ce") == "balanced",
            "retrain.strategy.loss balanced reweighs classes: task: regression has none",
        ),
        (
            "classes" in cfg.schema_.model_fields_set and cfg.schema_.classes != [0, 1],
            "schema.classes is given but task: regression has a numeric target: remove classes",
        ),
        (
            cfg.retrain.buffer.kind == "class_balanced",
            "retrain.buffer.kind class_balanced needs classes: use reservoir with task: regression",
        ),
        (
            getattr(cfg.model, "kind", None) not in (None, "mlp"),
            f"model.kind {getattr(cfg.model, 'kind', '')} is a classifier: task: regression takes "
            "the mlp or a factory model with one output",
        ),
        (bool(cfg.stages), "stages: are not supported with task: regression yet (use bootstrap:)"),
        (cfg.bootstrap.min_accuracy > 0, "bootstrap.min_accuracy is for classifiers: use max_mae"),
        (
            any(d.signal == "confidence" for d in cfg.detectors),
            "a detector watches confidence, which a regression model does not have",
        ),
        (
            cfg.policy.triggers.accuracy_floor is not None,
            "policy.triggers.accuracy_floor needs accuracy: task: regression has none",
        ),
        (
            any(r.metric not in ("mae", "rmse") for r in rules),
            "gate.rules with task: regression take metric mae or rmse",
        ),
        (any(r.by == "class" for r in rules), "gate.rules by: class needs classes"),
        (
            cfg.retrain.distributed is not None and cfg.retrain.distributed.active,
            "retrain.distributed is not supported with task: regression yet",
        ),
    ]
    return next((why for bad, why in checks if bad), None)
