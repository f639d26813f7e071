"""Elastic Weight Consolidation: keep the weights that mattered for old data.

Kirkpatrick et al., "Overcoming catastrophic forgetting in neural networks", PNAS 2017
(arXiv:1612.00796).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from strategies.base import Batch, TrainRequest, TrainResult
from strategies.loop import fit
from strategies.settings import TrainingSettings


class Config(TrainingSettings):
    """Settings of :class:`Ewc`."""

    kind: Literal["ewc"] = "ewc"
    strength: float = Field(default=1000.0, ge=0)
    """λ: weight of the quadratic penalty."""
    fisher_samples: int = Field(default=512, gt=0)
    """Buffer rows (at most) whose per-sample gradients estimate the Fisher information."""
    mix: float = Field(default=0.0, ge=0, lt=1)
    """Fraction of each batch replayed from the buffer: above zero, replay + EWC."""


def fisher_diagonal(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 64
) -> dict[str, torch.Tensor]:
    """The empirical Fisher's diagonal: mean squared per-sample gradient of the loss.

    Computed in eval mode (no dropout) with ``torch.func`` per-sample gradients, for the
    parameters that require gradients.

    Examples
    --------
    >>> f = fisher_diagonal(torch.nn.Linear(2, 2), torch.randn(8, 2), torch.zeros(8).long())
    >>> sorted(f), f["weight"].shape
    (['bias', 'weight'], torch.Size([2, 2]))
    """
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    device = next(iter(params.values())).device

    def loss(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(y), chunk):
            xb = x[i : i + chunk].to(device, torch.float32)
            yb = y[i : i + chunk].to(device, torch.int64)
            for n, g in per_sample(params, xb, yb).items():
                total[n] += g.pow(2).sum(dim=0)
    finally:
        model.train(was_training)
    return {n: t / max(1, len(y)) for n, t in total.items()}


class Consolidation:
    """``strength / 2 * Σ F_i (θ_i - θ*_i)²`` over the parameters, with θ* the weights
    before training and F the Fisher diagonal on the old data.

    Parameters are found by name in the training model at the first step (after the loop
    has moved it to its device); names that LoRA renamed are frozen and skipped.
    """

    def __init__(self, model: nn.Module, fisher: dict[str, torch.Tensor], strength: float):
        by_name = dict(model.named_parameters())
        self.anchors = {n: (by_name[n].detach().clone(), f) for n, f in fisher.items()}
        self.strength = strength
        self._terms: list[tuple[nn.Parameter, torch.Tensor, torch.Tensor]] | None = None

    def prepare(self, device: torch.device) -> None:
        self.anchors = {n: (s.to(device), f.to(device)) for n, (s, f) in self.anchors.items()}
        self._terms = None

    def __call__(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        if self._terms is None:
            params = dict(model.named_parameters())
            self._terms = [(params[n], s, f) for n, (s, f) in self.anchors.items()
                           if n in params]
        total = batch.logits.new_zeros((), dtype=torch.float32)
        for p, star, f in self._terms:
            total = total + (f * (p - star).pow(2)).sum()
        return 0.5 * self.strength * total


class Ewc:
    """Fine-tune with a quadratic pull towards the starting weights, weighted by how much
    each weight mattered for the old data (the Fisher information).

    The Fisher diagonal is estimated at the start of each run on the rehearsal buffer
    (the daemon's memory of past distributions) with the starting model, the champion:
    one consolidated penalty for everything the buffer remembers. Without a buffer there
    is nothing to consolidate and this is plain fine-tuning. With ``mix > 0`` batches
    also replay buffer rows (replay combined with EWC).

    Parameters
    ----------
    cfg
        Learning rate, batch size, weight decay, strength, fisher_samples, mix,
        patience, adaptation.

    Examples
    --------
    >>> import torch
    >>> from strategies.base import Budget, TrainRequest
    >>> from strategies.registry import BufferConfig, build_buffer
    >>> buffer = build_buffer(BufferConfig(capacity=50), seed=0)
    >>> buffer.add(torch.randn(80, 2), torch.randint(0, 2, (80,)))
    >>> model = torch.nn.Linear(2, 2)
    >>> x, y = torch.randn(64, 2), torch.randint(0, 2, (64,))
    >>> result = build(Config(batch_size=32)).train(
    ...     TrainRequest(model, x, y, budget=Budget(epochs=1), seed=0, device="cpu",
    ...                  buffer=buffer))
    >>> result.steps, result.extra["rehearsal_samples"]
    (2, 0)
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def train(self, request: TrainRequest) -> TrainResult:
        """Train ``request.model`` in place; see :func:`strategies.loop.fit`."""
        penalty = rehearsal = None
        fisher_rows = 0
        buffer = request.buffer
        if buffer is not None and len(buffer) > 0:
            bx, by = buffer.tensors()
            gen = torch.Generator().manual_seed(request.seed)
            pick = torch.randperm(len(by), generator=gen)[: self.cfg.fisher_samples]
            fisher = fisher_diagonal(request.model, bx[pick], by[pick])
            fisher_rows = len(pick)
            penalty = Consolidation(request.model, fisher, self.cfg.strength)
            if self.cfg.mix > 0:
                rehearsal = (bx, by)
        result = fit(request, self.cfg.recipe(mix=self.cfg.mix, rehearsal=rehearsal,
                                              penalty=penalty))
        # per-row forward and backward passes that estimated the Fisher diagonal
        result.extra["overhead_samples"] = fisher_rows
        return result


def build(cfg: Config) -> Ewc:
    """The strategy ``cfg`` describes."""
    return Ewc(cfg)
