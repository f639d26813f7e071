"""A regression champion's signals: its predicted values, the absolute residual as the
error (what the streaming detectors watch) and the squared residual as the loss."""

from __future__ import annotations

import numpy as np
import torch

from runtime.monitoring.monitor import Monitor


def test_error_is_the_absolute_residual_nan_where_unlabelled() -> None:
    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0]]))
        model.bias.fill_(10.0)
    mon = Monitor(model, [0, 1], regression=True)
    x = np.array([[1.0, 1.0], [0.0, 0.0], [2.0, 0.0]])
    y = np.array([11.0, np.nan, 15.0])
    sig = mon.score(x, y)
    assert sig.prediction.tolist() == [13.0, 10.0, 12.0]
    assert sig.error[0] == 2.0 and np.isnan(sig.error[1]) and sig.error[2] == 3.0
    assert sig.loss[2] == 9.0 and np.isnan(sig.confidence).all()
    assert mon.class_index(y) is y  # targets are not class positions


def test_a_fitted_loss_model_gives_every_row_its_expected_error() -> None:
    from strategies import loss_model

    model = torch.nn.Linear(2, 1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    with torch.no_grad():
        pred = model(torch.as_tensor(x, dtype=torch.float32)).numpy().reshape(-1)
    y = pred + rng.normal(size=200) * (0.1 + np.abs(x[:, 0]))  # harder where |x0| is large
    lm = loss_model.fit(x, pred, y)
    sig = Monitor(model, [], regression=True, loss=lm).score(x[:5], np.full(5, np.nan))
    assert sig.expected_error is not None and np.allclose(sig.expected_error,
                                                          lm.apply(x[:5], sig.prediction))
    assert Monitor(model, [], regression=True).score(x, y).expected_error is None
    unfitted = Monitor(model, [], regression=True, loss=loss_model.LossModel())
    assert unfitted.score(x, y).expected_error is None
