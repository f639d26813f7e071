"""The settings every strategy shares: optimiser, batch size, early stopping, adaptation."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from strategies.adaptation import AdaptConfig
from strategies.base import OptimizerSpec, Penalty, Recipe


class TrainingSettings(BaseModel):
    """Fields common to every strategy's ``Config`` (each adds its ``kind`` and its own).

    Examples
    --------
    >>> TrainingSettings(lr=0.01).optimizer
    OptimizerSpec(lr=0.01, weight_decay=0.0)
    """

    model_config = ConfigDict(extra="forbid")

    lr: float = Field(default=1e-3, gt=0)
    batch_size: int = Field(default=64, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    patience: int | None = Field(default=3, gt=0)
    """Early stopping after this many epochs without better validation accuracy (when
    ``train`` is given ``val``); ``None`` never stops early."""
    adapt: AdaptConfig = Field(default_factory=AdaptConfig)
    """Optimizer, freezing, layerwise learning rates, schedule, LoRA."""

    @property
    def optimizer(self) -> OptimizerSpec:
        return OptimizerSpec(lr=self.lr, weight_decay=self.weight_decay)

    def recipe(
        self,
        *,
        mix: float = 0.0,
        rehearsal: tuple[torch.Tensor, torch.Tensor] | None = None,
        rehearsal_logits: torch.Tensor | None = None,
        penalty: Penalty | None = None,
        criterion: Literal["ce", "balanced"] = "ce",
    ) -> Recipe:
        """The loop's :class:`~strategies.loop.Recipe`: these settings plus what the
        strategy adds to them."""
        return Recipe(
            batch_size=self.batch_size, optimizer=self.optimizer, mix=mix,
            rehearsal=rehearsal, rehearsal_logits=rehearsal_logits, penalty=penalty,
            criterion=criterion, patience=self.patience, adapt=self.adapt,
        )
