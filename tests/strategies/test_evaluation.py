"""Probabilities and accuracy."""

from __future__ import annotations

import math

import torch
from torch import nn

from strategies.evaluation import accuracy, predict_proba


def test_predict_proba_batches_and_restores_mode() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 3))
    model.train()
    x = torch.randn(10, 3)
    p = predict_proba(model, x, batch_size=3)
    assert p.shape == (10, 3) and p.device.type == "cpu"
    assert torch.allclose(p.sum(dim=1), torch.ones(10))
    # eval mode: dropout off, so the same call gives the same probabilities
    assert torch.equal(p, predict_proba(model, x, batch_size=3))
    # batching changes nothing but the last bits (a matmul over 10 rows is not bit-equal
    # to one over 3 on every CPU)
    assert torch.allclose(p, predict_proba(model, x), atol=1e-6)
    assert model.training


def test_empty_input() -> None:
    model = nn.Linear(3, 4)
    assert predict_proba(model, torch.empty(0, 3)).shape == (0, 4)
    assert math.isnan(accuracy(model, torch.empty(0, 3), torch.empty(0, dtype=torch.int64)))


def test_accuracy() -> None:
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
        model.bias.zero_()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    assert accuracy(model, x, torch.tensor([0, 1, 0, 0])) == 0.75
