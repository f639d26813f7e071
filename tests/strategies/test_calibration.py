"""Temperature (and isotonic) calibration on held-out rows: it makes an over-confident
model's probabilities honest, and its JSON form is checked on the way back."""

from __future__ import annotations

import numpy as np
import pytest

from strategies.calibration import Calibration, ece, fit, nll


def _overconfident(n: int = 3000, k: int = 3, seed: int = 0, sharpen: float = 3.0):
    """Labels drawn from softmax(z); the model reports ``sharpen * z`` as its logits."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 1.5
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y = (rng.random((n, 1)) > p.cumsum(axis=1)).sum(axis=1).astype(np.int64)
    return z * sharpen, y


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("method", ["temperature", "isotonic"])
def test_calibration_lowers_nll_and_ece_of_an_overconfident_model(method: str) -> None:
    logits, y = _overconfident()
    cal = fit(logits[:1500], y[:1500], method)
    assert cal.temperature == pytest.approx(3.0, rel=0.15)
    raw, fixed = _softmax(logits[1500:]), cal.apply(_softmax(logits[1500:]))
    assert nll(fixed, y[1500:]) < nll(raw, y[1500:]) - 0.1  # on rows it was not fitted on
    assert ece(fixed, y[1500:]) < ece(raw, y[1500:]) / 2
    assert cal.nll_after < cal.nll_before and cal.ece_after < cal.ece_before
    np.testing.assert_allclose(fixed.sum(axis=1), 1.0)
    assert (fixed.argmax(axis=1) == raw.argmax(axis=1)).all()  # predictions never change


def test_the_json_form_round_trips_and_a_changed_value_is_refused() -> None:
    logits, y = _overconfident(n=400)
    cal = fit(logits, y, "isotonic")
    data = cal.to_json()
    assert Calibration.from_json(data) == cal
    with pytest.raises(ValueError, match="sha256"):
        Calibration.from_json({**data, "temperature": 1.0})


def test_no_calibration_or_too_few_rows_is_the_identity() -> None:
    assert Calibration.from_json(None).identity
    logits, y = _overconfident(n=10)
    cal = fit(logits, y)
    p = _softmax(logits)
    assert cal.identity and cal.temperature == 1.0 and (cal.apply(p) == p).all()
