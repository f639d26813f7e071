"""Regression in the strategies: the loss, the MLP's one-output head in target units, the
buffers holding float targets, and the loop training a regressor."""

from __future__ import annotations

import pytest
import torch

from strategies import replay
from strategies.base import Budget, RegressionLoss, TrainRequest
from strategies.losses import regression_loss, val_score
from strategies.models import MLP, MLPConfig, build_model
from strategies.registry import BufferConfig, build_buffer


def test_mse_and_huber_are_taken_on_standardised_errors() -> None:
    out, y = torch.tensor([[10.0], [40.0]]), torch.tensor([0.0, 0.0])
    # errors 10 and 40 in units of a 20-wide SD: 0.5 and 2
    assert regression_loss(out, y, RegressionLoss("mse", scale=20.0)).item() == pytest.approx(
        (0.25 + 4.0) / 2)
    huber = regression_loss(out, y, RegressionLoss("huber", delta=1.0, scale=20.0)).item()
    assert huber == pytest.approx((0.125 + 1.5) / 2)  # linear beyond delta: outliers pull less


def test_the_head_outputs_target_units_and_classifier_keys_are_unchanged() -> None:
    plain = MLP(3, 2, hidden=[4], dropout=0.0)
    assert "target_mean" not in plain.state_dict()
    reg = build_model(MLPConfig(hidden=[4]), 3, 1, seed=0, target=(50.0, 10.0))
    with torch.no_grad():
        for p in reg.parameters():
            p.zero_()
    out = reg(torch.randn(5, 3))
    assert out.shape == (5, 1)
    assert torch.allclose(out, torch.full((5, 1), 50.0))  # a zero head predicts the mean
    state = reg.state_dict()
    assert state["target_mean"].item() == 50.0 and state["target_std"].item() == 10.0


def test_buffers_hold_float_targets_and_refuse_mixing_them_with_classes() -> None:
    buf = build_buffer(BufferConfig(capacity=10), seed=0)
    buf.add(torch.randn(30, 2), torch.linspace(-5, 5, 30))
    _, y = buf.tensors()
    assert len(buf) == 10 and y.dtype == torch.float32 and (y.abs() <= 5).all()
    restored = build_buffer(BufferConfig(capacity=10), seed=0)
    restored.load(buf.state_tensors(), buf.state_meta())
    assert torch.equal(restored.tensors()[1], y)
    with pytest.raises(ValueError, match="float targets"):
        buf.add(torch.randn(3, 2), torch.zeros(3, dtype=torch.int64))


def test_replay_trains_a_regressor_below_the_mean_predictor() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 3, generator=g)
    y = 100.0 + 20.0 * x[:, 0] - 10.0 * x[:, 1] + torch.randn(400, generator=g)
    model = build_model(MLPConfig(hidden=[16]), 3, 1, seed=0,
                        target=(float(y.mean()), float(y.std())))
    buffer = build_buffer(BufferConfig(capacity=100), seed=0)
    buffer.add(x[:100], y[:100])
    result = replay.build(replay.Config(lr=1e-2, batch_size=32, mix=0.25)).train(TrainRequest(
        model, x[100:300], y[100:300], budget=Budget(epochs=30), seed=0, device="cpu",
        buffer=buffer, val=(x[300:], y[300:]), regression=RegressionLoss("huber")))
    rmse = -val_score(model, x[300:], y[300:], regression=True)
    mean_rmse = float((y[300:] - y[:300].mean()).pow(2).mean().sqrt())
    assert rmse < 0.2 * mean_rmse
    assert result.extra["best_val_accuracy"] == pytest.approx(-rmse, rel=1e-4)
