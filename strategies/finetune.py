"""Naive fine-tuning: train on the new data only (the baseline that forgets)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from strategies.base import Budget, ProgressFn, RehearsalBuffer, TrainResult
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
    >>> from strategies.base import Budget
    >>> strategy = build(Config(lr=1e-2))
    >>> model = torch.nn.Linear(2, 2)
    >>> x, y = torch.randn(100, 2), torch.randint(0, 2, (100,))
    >>> result = strategy.train(model, x, y, None, Budget(epochs=2), seed=0, device="cpu")
    >>> result.epochs, result.steps, result.stopped_by
    (2, 4, 'epochs')
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def train(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        buffer: RehearsalBuffer | None,
        budget: Budget,
        seed: int,
        progress: ProgressFn | None = None,
        *,
        val: tuple[torch.Tensor, torch.Tensor] | None = None,
        should_stop: Callable[[], bool] | None = None,
        device: str | None = None,
        checkpoint: str | Path | None = None,
    ) -> TrainResult:
        """Train ``model`` in place on ``(x, y)``; see :func:`strategies.loop.fit`."""
        return fit(
            model,
            x,
            y,
            rehearsal=None,
            mix=0.0,
            batch_size=self.cfg.batch_size,
            optimizer=self.cfg.optimizer,
            budget=budget,
            seed=seed,
            progress=progress,
            val=val,
            patience=self.cfg.patience,
            should_stop=should_stop,
            device=device,
            adapt=self.cfg.adapt,
            checkpoint=checkpoint,
        )


def build(cfg: Config) -> Finetune:
    """The strategy ``cfg`` describes."""
    return Finetune(cfg)
