"""KSWIN: a Kolmogorov-Smirnov test inside a sliding window of one stream."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from detectors.base import Detector
from detectors.river_adapter import from_config


class Config(BaseModel):
    """KSWIN compares the last ``stat_size`` values of a ``window_size`` sliding window
    with as many values drawn from the rest of it, by a KS test at level ``alpha``
    (Raab, Heusinger & Schleif, Neurocomputing 2020).

    For continuous signals: the default ``signal`` is ``"loss"`` and ``alpha`` is 1e-4
    (it tests at every value, so river's default 0.005 gives a false alarm every few
    hundred values of stationary noise; 1e-4 is the value river's own example uses). On
    a 0/1 error stream a KS test of 30 values has little power: use ADWIN or DDM there.
    ``seed`` defaults to 0 rather than river's ``None`` so that runs and restores
    reproduce. It runs one KS test per value, in the compiled port
    (:mod:`detectors.kernels_stream`, same alarms as river).
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["kswin"] = "kswin"
    name: str | None = None
    signal: str = "loss"
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.0001
    window_size: Annotated[int, Field(ge=2)] = 100
    stat_size: Annotated[int, Field(ge=1)] = 30
    seed: int = 0
    min_samples: Annotated[int, Field(ge=0)] = 100

    @model_validator(mode="after")
    def _sizes(self) -> Config:
        if 2 * self.stat_size > self.window_size:
            raise ValueError("window_size must be at least twice stat_size")
        return self


def build(cfg: Config, features: Sequence[str]) -> Detector:
    """A KSWIN detector.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> det = build(Config(signal="x"), features=["x"])
    >>> det.update(rng.normal(0.0, 1.0, 300))
    >>> det.check().status
    'ok'
    >>> det.update(rng.normal(3.0, 1.0, 200))
    >>> det.check().status
    'drift'
    """
    return from_config("KSWIN", cfg, features)
