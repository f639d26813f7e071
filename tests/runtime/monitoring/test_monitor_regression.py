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
