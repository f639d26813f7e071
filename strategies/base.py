"""The strategy protocol, the rehearsal-buffer protocol and their value types.

Strategies see tensors only. A strategy fine-tunes a model on new data mixed with a
rehearsal buffer, inside a budget, with an explicit seed; it reports progress through a
plain callable so the runtime can turn it into ``retrain.progress`` events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from torch import nn

from strategies.adaptation import AdaptConfig


@dataclass(frozen=True)
class Budget:
    """How much training a strategy may do; whichever limit is hit first ends it."""

    epochs: int | None = 5
    steps: int | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class RegressionLoss:
    """The loss of a regression run: the model outputs ``[n, 1]`` values in target units
    and the labels are float targets.

    ``kind`` is ``"mse"`` (mean squared error) or ``"huber"`` (quadratic within ``delta``
    of the target, linear beyond: robust to outlying targets); both are taken on errors
    divided by ``scale`` (the target's standard deviation), so the learning rate and
    ``delta`` mean the same for every target's units.

    Examples
    --------
    >>> RegressionLoss("huber", delta=1.5, scale=2.0).kind
    'huber'
    """

    kind: Literal["mse", "huber"] = "mse"
    delta: float = 1.0
    scale: float = 1.0


@dataclass(frozen=True)
class Progress:
    """One progress report: emitted once per epoch (and at the end)."""

    epoch: int
    step: int
    samples: int
    loss: float
    seconds: float
    val_accuracy: float | None = None
    """Validation accuracy; for a regression run, minus the validation RMSE in target
    units (higher is better either way)."""


ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True)
class TrainResult:
    """What a training run did."""

    samples_processed: int
    steps: int
    epochs: int
    seconds: float
    final_loss: float
    stopped_by: str  # "epochs" | "steps" | "seconds" | "early_stopping" | "interrupted"
    history: tuple[Progress, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class RehearsalBuffer(Protocol):
    """A bounded memory of past (x, y) samples.

    ``tensors()`` returns the stored samples; ``add`` offers new samples to the storage
    policy (which decides what is kept). ``state_tensors``/``state_meta`` are what the
    registry saves (safetensors + JSON) and ``load`` restores, sampling state included,
    so a restarted daemon continues the same buffer.

    A buffer can also hold the model's logits for each row (DER replays them):
    ``logits()`` is ``[n, k]`` aligned with ``tensors()``, with NaN rows for rows added
    without logits, or ``None`` when no row has any; ``set_logits`` replaces them all.
    """

    capacity: int

    def __len__(self) -> int: ...

    def add(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor | None = None) -> None: ...

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]: ...

    def logits(self) -> torch.Tensor | None: ...

    def set_logits(self, logits: torch.Tensor) -> None: ...

    def state_tensors(self) -> dict[str, torch.Tensor]: ...

    def state_meta(self) -> dict[str, Any]: ...

    def load(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Batch:
    """One training batch as a penalty sees it.

    The first ``n_new`` rows are new data, the rest were replayed from the buffer;
    ``replay_logits`` holds the buffer's stored logits for the replayed rows (NaN rows
    where none were stored), or ``None``.
    """

    x: torch.Tensor
    y: torch.Tensor
    logits: torch.Tensor
    n_new: int
    replay_logits: torch.Tensor | None = None


@runtime_checkable
class Penalty(Protocol):
    """A term added to the cross-entropy of every batch (EWC, LwF, DER's logit replay).

    ``prepare`` is called once the model is on the training device, before the first
    step. Penalties are built from the model *before* training, so a resumed run that is
    given the same starting model rebuilds the same penalty.
    """

    def prepare(self, device: torch.device) -> None: ...

    def __call__(self, model: nn.Module, batch: Batch) -> torch.Tensor: ...


@dataclass(frozen=True)
class OptimizerSpec:
    """The optimizer's learning rate (of the top layer) and weight decay for one run."""

    lr: float
    weight_decay: float


@dataclass(frozen=True, eq=False)
class Recipe:
    """How a strategy trains on a :class:`~strategies.base.TrainRequest`: what it adds to
    the caller's request (batch composition, optimiser, loss).

    Parameters
    ----------
    batch_size
        Rows per step, new and rehearsal together.
    optimizer
        Learning rate and weight decay (the optimizer's kind is ``adapt.optimizer``).
    mix
        Fraction of each batch drawn from ``rehearsal``, in ``[0, 1)``.
    rehearsal
        Old data ``(x, y)`` to mix into each batch; ``None`` or empty for none.
    rehearsal_logits
        Stored logits ``[len(rehearsal), k]`` for the rehearsal rows (NaN rows where
        unknown); the penalty sees the replayed rows' logits as ``Batch.replay_logits``.
    penalty
        Added to the loss of every batch.
    criterion
        ``"ce"``: cross-entropy. ``"balanced"``: the balanced softmax (Ren et al.,
        "Balanced Meta-Softmax for Long-Tailed Visual Recognition", NeurIPS 2020): the
        logits are shifted by the log of each class's expected share of a batch (from the
        new rows' and the rehearsal rows' labels and ``mix``) before the cross-entropy, so
        the few old classes' rows replayed among many new-class rows are not outvoted:
        the trained model's plain logits estimate a class-balanced posterior.
    patience
        With validation: stop after this many epochs without a better validation
        accuracy (``stopped_by="early_stopping"``). ``None`` never stops early.
    adapt
        Freezing, layerwise learning rates, schedule, LoRA (:mod:`strategies.adaptation`).
    """

    batch_size: int
    optimizer: OptimizerSpec
    mix: float = 0.0
    rehearsal: tuple[torch.Tensor, torch.Tensor] | None = None
    rehearsal_logits: torch.Tensor | None = None
    penalty: Penalty | None = None
    criterion: Literal["ce", "balanced"] = "ce"
    patience: int | None = None
    adapt: AdaptConfig | None = None


@dataclass(frozen=True, eq=False)
class TrainRequest:
    """One training run as the caller asks for it; every strategy's ``train`` takes one.

    The model is trained in place on ``(x, y)``, rows ``[n, ...]`` and int64 labels
    ``[n]``, with rehearsal from ``buffer`` as the strategy sees fit, inside ``budget``,
    seeded by ``seed`` (shuffling, rehearsal draws, dropout, the validation split).

    ``progress`` is called after every epoch; ``val`` (``(x, y)``) is evaluated after each
    epoch, for early stopping and best-epoch weights; ``should_stop`` is polled before
    every step (``True`` ends the run with ``stopped_by="interrupted"``); ``device``
    ``None`` picks CUDA if available; ``checkpoint`` is a directory where the run saves
    its state after every epoch and from which a later run of the same request resumes.
    """

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    _: KW_ONLY
    budget: Budget
    seed: int
    buffer: RehearsalBuffer | None = None
    progress: ProgressFn | None = None
    val: tuple[torch.Tensor, torch.Tensor] | None = None
    should_stop: Callable[[], bool] | None = None
    device: str | None = None
    checkpoint: str | Path | None = None
    regression: RegressionLoss | None = None


@runtime_checkable
class Strategy(Protocol):
    """Fine-tunes ``request.model`` in place on the request's rows plus rehearsal from
    its buffer.

    The strategy does not add the new data to the buffer; the caller does that after
    training (so a failed or refused run can leave the buffer untouched).
    """

    def train(self, request: TrainRequest) -> TrainResult: ...
