"""DDM: the drift detection method on a 0/1 error stream."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from detectors.base import Detector
from detectors.river_adapter import from_config


class Config(BaseModel):
    """DDM tracks the error rate ``p`` and its binomial deviation ``s`` and alarms when
    ``p + s`` exceeds its minimum by ``drift_threshold`` standard deviations (Gama et al.,
    SBIA 2004). Input: 1 for an error, 0 for a correct prediction.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["ddm"] = "ddm"
    name: str | None = None
    signal: str = "error"
    warm_start: Annotated[int, Field(ge=1)] = 30
    warning_threshold: Annotated[float, Field(gt=0)] = 2.0
    drift_threshold: Annotated[float, Field(gt=0)] = 3.0
    min_samples: Annotated[int, Field(ge=0)] = 100

    @model_validator(mode="after")
    def _levels(self) -> Config:
        if self.warning_threshold >= self.drift_threshold:
            raise ValueError(
                f"warning_threshold {self.warning_threshold:g} must be below drift_threshold "
                f"{self.drift_threshold:g}: the warning has to come before the drift"
            )
        return self


def build(cfg: Config, features: Sequence[str]) -> Detector:
    """A DDM detector.

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
    return from_config("DDM", cfg, features)
