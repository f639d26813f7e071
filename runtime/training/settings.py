"""Settings of a retrain that runs on several processes (``retrain.distributed``).

The retrain child launches ``nproc_per_node`` workers with ``torch.distributed.run``
(standalone on one host unless a rendezvous endpoint is given); each runs the same loop
with the model in ``DistributedDataParallel`` (:mod:`strategies.distributed`). The batch
size is per process: the effective batch is ``batch_size × nproc_per_node × nnodes``,
the learning rate is used as given.
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
        return ("retrain.distributed: strategy.adapt.unfreeze_every changes the trainable "
                "parameters between epochs, which DistributedDataParallel fixes once; "
                "drop it or train on one process")
    if adapt.lora is not None:
        return ("retrain.distributed: strategy.adapt.lora (peft) is not shown correct "
                "under DistributedDataParallel yet; train LoRA on one process")
    if distributed.backend == "nccl" and device == "cpu":
        return "retrain.distributed: backend nccl needs retrain.device cuda (or auto)"
    if distributed.backend == "gloo" and device.startswith("cuda"):
        return ("retrain.distributed: backend gloo with retrain.device cuda is not "
                "supported here; use nccl or auto")
    return None
