"""The loss model (direct loss estimation): a regression's expected absolute error from
its inputs, fitted on golden rows, tracks the realized MAE under a covariate shift."""

from __future__ import annotations

import numpy as np
import pytest

from strategies import loss_model


def _rows(rng: np.random.Generator, n: int, lo: float, hi: float) -> tuple[np.ndarray, ...]:
    """A model whose error grows with |x0|: y = 2 x0 + noise of SD 0.1 + 0.5 |x0|."""
    x = np.column_stack([rng.uniform(lo, hi, n), rng.normal(size=n)])
    pred = 2 * x[:, 0]
    y = pred + rng.normal(size=n) * (0.1 + 0.5 * np.abs(x[:, 0]))
    return x, pred, y


def test_the_expected_mae_follows_a_shift_to_harder_rows() -> None:
    rng = np.random.default_rng(0)
    model = loss_model.fit(*_rows(rng, 1000, -2, 2))
    assert model.fitted and model.rows == 1000
    for lo, hi in [(-0.5, 0.5), (1.0, 2.0), (-2.0, -1.5)]:  # easy rows, then harder ones
        x, pred, y = _rows(rng, 2000, lo, hi)
        realized = float(np.abs(pred - y).mean())
        assert model.apply(x, pred).mean() == pytest.approx(realized, rel=0.1), (lo, hi)
        assert abs(model.error / realized - 1) > 0.3  # the golden MAE alone is far off


def test_json_round_trip_is_checked_and_too_few_rows_fit_nothing() -> None:
    rng = np.random.default_rng(1)
    model = loss_model.fit(*_rows(rng, 100, -1, 1))
    back = loss_model.LossModel.from_json(model.to_json())
    x, pred, _ = _rows(rng, 10, -1, 1)
    assert np.allclose(back.apply(x, pred), model.apply(x, pred))
    bad = {**model.to_json(), "intercept": 5.0}
    with pytest.raises(ValueError, match="sha256"):
        loss_model.LossModel.from_json(bad)
    assert not loss_model.LossModel.from_json(None).fitted
    few = loss_model.fit(*_rows(rng, 10, -1, 1))
    assert not few.fitted and np.isnan(few.apply(x, pred)).all()
