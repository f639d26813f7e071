"""Evaluating a classifier: class probabilities and accuracy, batched, without gradients."""

from __future__ import annotations

import torch
from torch import nn


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Softmax of the model's logits, ``[n, n_classes]`` float32 on the CPU.

    The model runs in eval mode on its own device; its train/eval mode is restored after.

    Examples
    --------
    >>> model = torch.nn.Linear(3, 2)
    >>> p = predict_proba(model, torch.zeros(5, 3))
    >>> p.shape, bool(torch.allclose(p.sum(dim=1), torch.ones(5)))
    (torch.Size([5, 2]), True)
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    device = _device_of(model)
    was_training = model.training
    model.eval()
    try:
        chunks = [
            torch.softmax(
                model(x[i : i + batch_size].to(device, torch.float32)).float(), dim=1
            ).cpu()
            for i in range(0, len(x), batch_size)
        ]
    finally:
        model.train(was_training)
    if not chunks:
        n_classes = _n_outputs(model, x, device)
        return torch.empty(0, n_classes)
    return torch.cat(chunks)


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """The model's logits, ``[n, n_classes]`` float32 on the CPU (eval mode, restored after).

    Examples
    --------
    >>> predict_logits(torch.nn.Linear(3, 2), torch.zeros(4, 3)).shape
    torch.Size([4, 2])
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    device = _device_of(model)
    was_training = model.training
    model.eval()
    try:
        chunks = [
            model(x[i : i + batch_size].to(device, torch.float32)).float().cpu()
            for i in range(0, len(x), batch_size)
        ]
        if not chunks:
            return torch.empty(0, _n_outputs(model, x, device))
    finally:
        model.train(was_training)
    return torch.cat(chunks)


def _n_outputs(model: nn.Module, x: torch.Tensor, device: torch.device) -> int:
    """Width of the output for an empty input (one dummy row through the model)."""
    was_training = model.training
    model.eval()
    try:
        return int(model(torch.zeros(1, *x.shape[1:], device=device)).shape[1])
    finally:
        model.train(was_training)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 4096) -> float:
    """Fraction of rows whose most probable class equals ``y`` (NaN for no rows).

    Examples
    --------
    >>> model = torch.nn.Linear(2, 2)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.eye(2)); _ = model.bias.zero_()
    >>> accuracy(model, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
    0.5
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
    if len(y) == 0:
        return float("nan")
    pred = predict_proba(model, x, batch_size).argmax(dim=1)
    return float((pred == y.cpu()).float().mean())
