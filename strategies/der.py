"""Dark Experience Replay++: replay stored logits as well as labels.

Buzzega et al., "Dark Experience for General Continual Learning: a Strong, Simple
Baseline", NeurIPS 2020 (arXiv:2004.07211).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from strategies.base import Batch, RehearsalBuffer, TrainRequest, TrainResult
from strategies.evaluation import predict_logits
from strategies.loop import fit
from strategies.settings import TrainingSettings


class Config(TrainingSettings):
    """Settings of :class:`Der`."""

    kind: Literal["der"] = "der"
    mix: float = Field(default=0.5, gt=0, lt=1)
    """Fraction of each batch drawn from the buffer."""
    alpha: float = Field(default=0.5, ge=0)
    """Weight of the logit-matching term (mean squared error to the stored logits)."""


class LogitReplay:
    """``alpha`` times the mean squared error between the replayed rows' logits and the
    logits stored with them (rows without stored logits are skipped)."""

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha

    def prepare(self, device: torch.device) -> None:
        pass

    def __call__(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        target = batch.replay_logits
        if target is None or len(target) == 0 or self.alpha == 0:
            return batch.logits.new_zeros((), dtype=torch.float32)
        out = batch.logits[batch.n_new :].float()
        known = torch.isfinite(target).all(dim=1)
        diff = torch.where(known[:, None], out - torch.nan_to_num(target), 0.0)
        denom = known.sum().clamp(min=1) * target.shape[1]
        return self.alpha * diff.pow(2).sum() / denom


def fill_logits(model: nn.Module, buffer: RehearsalBuffer) -> int:
    """Give buffer rows without logits the logits of ``model``; returns how many.

    The caller adds a retrain's rows to the buffer after training with the model that
    was just trained; the next DER run fills their logits from its starting model, the
    champion, which is that model when it was promoted.
    """
    bx, _ = buffer.tensors()
    stored = buffer.logits()
    missing = (
        torch.ones(len(bx), dtype=torch.bool)
        if stored is None
        else ~torch.isfinite(stored).all(dim=1)
    )
    n = int(missing.sum())
    if n == 0:
        return 0
    fresh = predict_logits(model, bx[missing])
    if stored is None or stored.shape[1] != fresh.shape[1]:
        stored = torch.full((len(bx), fresh.shape[1]), torch.nan)
        missing = torch.ones(len(bx), dtype=torch.bool)
        fresh = predict_logits(model, bx)
    merged = stored.clone()
    merged[missing] = fresh
    buffer.set_logits(merged)
    return n


class Der:
    """DER++: replay from the buffer with labels (cross-entropy) and stored logits (MSE).

    Each batch mixes new rows with a fraction ``mix`` of buffer rows, as :mod:`replay`
    does; the replayed rows also pull the model's logits towards those stored with them,
    which keeps the old function, not just the old labels. Here one replay draw serves
    both terms (the paper draws two). Buffer rows that have no logits yet get the
    starting model's (see :func:`fill_logits`): this strategy writes logits into the
    buffer, nothing else.

    Parameters
    ----------
    cfg
        Learning rate, batch size, weight decay, mix, alpha, patience, adaptation.

    Examples
    --------
    >>> import torch
    >>> from strategies.base import Budget, TrainRequest
    >>> from strategies.registry import BufferConfig, build_buffer
    >>> buffer = build_buffer(BufferConfig(capacity=50), seed=0)
    >>> buffer.add(torch.randn(80, 2), torch.randint(0, 2, (80,)))
    >>> model = torch.nn.Linear(2, 2)
    >>> x, y = torch.randn(96, 2), torch.randint(0, 2, (96,))
    >>> result = build(Config(batch_size=32)).train(
    ...     TrainRequest(model, x, y, budget=Budget(epochs=1), seed=0, device="cpu",
    ...                  buffer=buffer))
    >>> result.extra["rehearsal_samples"], buffer.logits().shape
    (96, torch.Size([50, 2]))
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def train(self, request: TrainRequest) -> TrainResult:
        """Train ``request.model`` in place; see :func:`strategies.loop.fit`."""
        rehearsal = logits = None
        filled = 0
        buffer = request.buffer
        if buffer is not None and len(buffer) > 0:
            filled = fill_logits(request.model, buffer)
            rehearsal, logits = buffer.tensors(), buffer.logits()
        recipe = self.cfg.recipe(mix=self.cfg.mix, rehearsal=rehearsal, rehearsal_logits=logits,
                                 penalty=LogitReplay(self.cfg.alpha))
        result = fit(request, recipe)
        result.extra["overhead_samples"] = filled  # forward passes that stored logits
        return result


def build(cfg: Config) -> Der:
    """The strategy ``cfg`` describes."""
    return Der(cfg)
