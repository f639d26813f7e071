"""FHDDM: the fast Hoeffding drift detection method on a 0/1 error stream."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from detectors.base import Detector
from detectors.river_adapter import from_config


class Config(BaseModel):
    """FHDDM alarms when the accuracy over a sliding window of ``sliding_window_size``
    falls more than a Hoeffding bound below its maximum (Pesaranghader & Viktor,
    ECML-PKDD 2016); ``short_window_size`` adds the stacking variant's second window.

    river's FHDDM watches accuracy, so the detector feeds it ``1 - x``: input is, as for
    the other error detectors, 1 for an error and 0 for a correct prediction.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["fhddm"] = "fhddm"
    name: str | None = None
    signal: str = "error"
    sliding_window_size: Annotated[int, Field(ge=1)] = 100
    confidence_level: Annotated[float, Field(gt=0, lt=1)] = 0.000001
    short_window_size: Annotated[int | None, Field(ge=1)] = None
    min_samples: Annotated[int, Field(ge=0)] = 100

    @model_validator(mode="after")
    def _windows(self) -> Config:
        short = self.short_window_size
        if short is not None and short > self.sliding_window_size:
            raise ValueError("short_window_size must not exceed sliding_window_size")
        return self


def build(cfg: Config, features: Sequence[str]) -> Detector:
    """An FHDDM detector.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> det = build(Config(), features=[])
    >>> det.update((rng.random(2000) < 0.1).astype(float))
    >>> det.check().status
    'ok'
    >>> det.update((rng.random(1000) < 0.5).astype(float))
    >>> det.check().status
    'drift'
    """
    return from_config("FHDDM", cfg, features, invert=True)
