"""Learning without Forgetting: distil the starting model's outputs while learning.

Li and Hoiem, "Learning without Forgetting", ECCV 2016 (arXiv:1606.09282).
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from strategies.base import Batch, TrainRequest, TrainResult
from strategies.loop import fit
from strategies.settings import TrainingSettings


class Config(TrainingSettings):
    """Settings of :class:`Lwf`."""

    kind: Literal["lwf"] = "lwf"
    alpha: float = Field(default=1.0, ge=0)
    """Weight of the distillation term."""
    temperature: float = Field(default=2.0, gt=0)
    mix: float = Field(default=0.0, ge=0, lt=1)
    """Fraction of each batch replayed from the buffer: above zero, replay + LwF."""


class Distillation:
    """``alpha * T² * KL(teacher_T || student_T)`` over the batch, where the teacher is a
    frozen copy of the model as it was before training and ``_T`` means softmax at
    temperature ``T``."""

    def __init__(self, model: nn.Module, alpha: float, temperature: float) -> None:
        self.teacher = copy.deepcopy(model).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.alpha = alpha
        self.t = temperature
        self.device = torch.device("cpu")

    def prepare(self, device: torch.device) -> None:
        self.teacher.to(device)
        self.device = device

    def __call__(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        with torch.no_grad(), torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"
        ):
            target = self.teacher(batch.x)
        student = F.log_softmax(batch.logits.float() / self.t, dim=1)
        teacher = F.log_softmax(target.float() / self.t, dim=1)
        kl = F.kl_div(student, teacher, log_target=True, reduction="batchmean")
        return self.alpha * self.t**2 * kl


class Lwf:
    """Fine-tune while keeping the outputs of the starting model (the champion).

    Every batch adds the distillation loss between the training model and a frozen copy
    of the model it started from, on the batch's rows. No old data is needed; with
    ``mix > 0`` batches also replay buffer rows (replay combined with LwF).

    Parameters
    ----------
    cfg
        Learning rate, batch size, weight decay, alpha, temperature, mix, patience,
        adaptation.

    Examples
    --------
    >>> import torch
    >>> from strategies.base import Budget, TrainRequest
    >>> model = torch.nn.Linear(2, 2)
    >>> x, y = torch.randn(64, 2), torch.randint(0, 2, (64,))
    >>> result = build(Config(batch_size=32)).train(
    ...     TrainRequest(model, x, y, budget=Budget(epochs=2), seed=0, device="cpu"))
    >>> result.steps, result.stopped_by
    (4, 'epochs')
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def train(self, request: TrainRequest) -> TrainResult:
        """Train ``request.model`` in place; see :func:`strategies.loop.fit`."""
        buffer = request.buffer
        use_buffer = buffer is not None and len(buffer) > 0 and self.cfg.mix > 0
        rehearsal = buffer.tensors() if use_buffer and buffer is not None else None
        penalty = Distillation(request.model, self.cfg.alpha, self.cfg.temperature)
        result = fit(request, self.cfg.recipe(mix=self.cfg.mix, rehearsal=rehearsal,
                                              penalty=penalty))
        # the teacher's forward pass runs on every training row
        result.extra["overhead_samples"] = result.samples_processed
        return result


def build(cfg: Config) -> Lwf:
    """The strategy ``cfg`` describes."""
    return Lwf(cfg)
