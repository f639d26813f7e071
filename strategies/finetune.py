"""Naive fine-tuning: train on the new data only (the baseline that forgets)."""

from __future__ import annotations

from typing import Literal

from strategies.base import TrainRequest, TrainResult
from strategies.loop import fit
from strategies.settings import TrainingSettings


class Config(TrainingSettings):
    """Settings of :class:`Finetune`."""

    kind: Literal["finetune"] = "finetune"


class Finetune:
    """Fine-tune on the new data with Adam; the rehearsal buffer is ignored.

    Parameters
    ----------
    cfg
        Learning rate, batch size, weight decay, patience.

    Examples
    --------
    >>> import torch
    >>> from strategies.base import Budget, TrainRequest
    >>> strategy = build(Config(lr=1e-2))
    >>> model = torch.nn.Linear(2, 2)
    >>> x, y = torch.randn(100, 2), torch.randint(0, 2, (100,))
    >>> result = strategy.train(
    ...     TrainRequest(model, x, y, budget=Budget(epochs=2), seed=0, device="cpu"))
    >>> result.epochs, result.steps, result.stopped_by
    (2, 4, 'epochs')
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def train(self, request: TrainRequest) -> TrainResult:
        """Train ``request.model`` in place; see :func:`strategies.loop.fit`."""
        return fit(request, self.cfg.recipe())


def build(cfg: Config) -> Finetune:
    """The strategy ``cfg`` describes."""
    return Finetune(cfg)
