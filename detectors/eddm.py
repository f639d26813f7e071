"""EDDM: the early drift detection method on a 0/1 error stream."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from detectors.base import Detector
from detectors.river_adapter import from_config


class Config(BaseModel):
    """EDDM tracks the distance between consecutive errors and alarms when its mean plus
    two deviations falls below ``beta`` times its maximum (Baena-García et al., 2006).
    Input: 1 for an error, 0 for a correct prediction.

    Defaults differ from river's (``warm_start=30, alpha=0.95, beta=0.9``), which alarm
    within a few hundred rows of a stationary error stream; ``alpha=0.8, beta=0.75`` are
    the values river's own example uses, and ``warm_start`` (errors seen before testing)
    100 keeps the test from deciding on the first few distances.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["eddm"] = "eddm"
    name: str | None = None
    signal: str = "error"
    warm_start: Annotated[int, Field(ge=1)] = 100
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.8
    beta: Annotated[float, Field(gt=0, lt=1)] = 0.75
    min_samples: Annotated[int, Field(ge=0)] = 100

    @model_validator(mode="after")
    def _levels(self) -> Config:
        if self.alpha <= self.beta:
            raise ValueError(
                f"alpha {self.alpha:g} (the warning level) must be above beta {self.beta:g} "
                "(the drift level): the warning has to come before the drift"
            )
        return self


def build(cfg: Config, features: Sequence[str]) -> Detector:
    """An EDDM detector.

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
    return from_config("EDDM", cfg, features)
