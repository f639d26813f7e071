"""Experience replay: every batch mixes new data with samples from the rehearsal buffer.

Chaudhry et al., "On Tiny Episodic Memories in Continual Learning", 2019
(arXiv:1902.10486).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from strategies.base import TrainRequest, TrainResult
from strategies.loop import fit
from strategies.settings import TrainingSettings


class Config(TrainingSettings):
    """Settings of :class:`Replay`."""

    kind: Literal["replay"] = "replay"
    mix: float = Field(default=0.5, ge=0, lt=1)
    """Fraction of each batch drawn from the buffer."""
    loss: Literal["ce", "balanced"] = "ce"
    """``ce``: cross-entropy. ``balanced``: the balanced softmax (logits shifted by the
    log of each class's share of a batch during training): for new classes arriving
    (class-incremental drift), where the few old classes' replayed rows would be outvoted
    by the new ones. Its model predicts as if every class were equally frequent, so leave
    it at ``ce`` where the deployed class frequencies are skewed and stable."""


class Replay:
    """Fine-tune with Adam on batches of new rows plus rows replayed from the buffer.

    An epoch is one pass over the new data; a fraction ``mix`` of each batch is drawn
    uniformly from the buffer. With an empty or no buffer this is plain fine-tuning.
    The buffer is only read: the caller adds the new data after training.

    To combine replay with a regularizer, use that regularizer's strategy with ``mix``
    above zero: ``{kind: ewc, mix: 0.5}`` or ``{kind: lwf, mix: 0.5}`` replay exactly as
    this strategy does and add their penalty (DER always replays).

    Parameters
    ----------
    cfg
        Learning rate, batch size, weight decay, mix, patience.

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
    >>> result.steps, result.extra["new_samples"], result.extra["rehearsal_samples"]
    (6, 96, 96)
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def train(self, request: TrainRequest) -> TrainResult:
        """Train ``request.model`` in place; see :func:`strategies.loop.fit`."""
        buffer = request.buffer
        rehearsal = buffer.tensors() if buffer is not None and len(buffer) > 0 else None
        return fit(request, self.cfg.recipe(mix=self.cfg.mix, rehearsal=rehearsal,
                                            criterion=self.cfg.loss))


def build(cfg: Config) -> Replay:
    """The strategy ``cfg`` describes."""
    return Replay(cfg)
