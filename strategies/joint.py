"""Joint training, the oracle: retrain from scratch on everything kept.

Not a continual-learning method but the reference the others are measured against: it
sees the new rows and every buffered row at once, from freshly initialised weights, and
pays for it with compute that grows with the memory.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import torch
from torch import nn

from strategies.base import TrainRequest, TrainResult
from strategies.loop import fit
from strategies.settings import TrainingSettings


class Config(TrainingSettings):
    """Settings of :class:`Joint`."""

    kind: Literal["joint"] = "joint"


def reinitialize(model: nn.Module, seed: int) -> int:
    """Re-draw the weights of every submodule that has ``reset_parameters``; returns how
    many were reset. Buffers such as input normalisation are kept.

    Examples
    --------
    >>> reinitialize(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU()), seed=0)
    1
    """
    n = 0
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        for m in model.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
                n += 1
    return n


class Joint:
    """Re-initialise the model, then train on the new rows plus every buffered row.

    With the buffer large enough to hold everything, this is the joint-training upper
    bound of the continual-learning literature.

    Parameters
    ----------
    cfg
        Learning rate, batch size, weight decay, patience, adaptation.

    Examples
    --------
    >>> import torch
    >>> from strategies.base import Budget, TrainRequest
    >>> from strategies.registry import BufferConfig, build_buffer
    >>> buffer = build_buffer(BufferConfig(capacity=50), seed=0)
    >>> buffer.add(torch.randn(32, 2), torch.randint(0, 2, (32,)))
    >>> model = torch.nn.Linear(2, 2)
    >>> x, y = torch.randn(32, 2), torch.randint(0, 2, (32,))
    >>> result = build(Config(batch_size=16)).train(
    ...     TrainRequest(model, x, y, budget=Budget(epochs=1), seed=0, device="cpu",
    ...                  buffer=buffer))
    >>> result.samples_processed
    64
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def train(self, request: TrainRequest) -> TrainResult:
        """Re-initialise ``request.model`` and train it; see :func:`strategies.loop.fit`."""
        buffer = request.buffer
        if buffer is not None and len(buffer) > 0:
            bx, by = buffer.tensors()
            x = torch.cat([request.x.to(torch.float32).cpu(), bx])
            y = torch.cat([request.y.to(torch.int64).cpu(), by])
            request = replace(request, x=x, y=y)
        reinitialize(request.model, request.seed)
        return fit(request, self.cfg.recipe())


def build(cfg: Config) -> Joint:
    """The strategy ``cfg`` describes."""
    return Joint(cfg)
