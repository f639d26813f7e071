"""HDDM-A: Hoeffding-bound test on moving averages of a 0/1 error stream."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from detectors.base import Detector, check_confidence_levels
from detectors.river_adapter import from_config


class Config(BaseModel):
    """HDDM-A compares the mean since a cut point with the overall mean by Hoeffding's
    inequality (Frías-Blanco et al., IEEE TKDE 2015). Input: values in [0, 1], usually
    1 for an error. ``two_sided_test`` also alarms when the mean falls.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["hddm_a"] = "hddm_a"
    name: str | None = None
    signal: str = "error"
    drift_confidence: Annotated[float, Field(gt=0, lt=1)] = 0.001
    warning_confidence: Annotated[float, Field(gt=0, lt=1)] = 0.005
    two_sided_test: bool = False
    min_samples: Annotated[int, Field(ge=0)] = 100

    @model_validator(mode="after")
    def _levels(self) -> Config:
        check_confidence_levels(self.warning_confidence, self.drift_confidence)
        return self


def build(cfg: Config, features: Sequence[str]) -> Detector:
    """An HDDM-A detector.

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
    return from_config("HDDMA", cfg, features)
