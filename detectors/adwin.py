"""ADWIN: adaptive windowing over one numeric stream."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from detectors.base import Detector
from detectors.river_adapter import from_config


class Config(BaseModel):
    """ADWIN keeps the longest recent window whose two halves have statistically equal
    means, and drops the older part when they differ (Bifet & Gavaldà, SDM 2007).

    Two-sided, needs no scale parameter, for any bounded numeric signal. Parameters are
    river's :class:`river.drift.ADWIN`'s; ``delta`` bounds the false-alarm probability.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["adwin"] = "adwin"
    name: str | None = None
    signal: str = "error"
    delta: Annotated[float, Field(gt=0, lt=1)] = 0.002
    clock: Annotated[int, Field(ge=1)] = 32
    max_buckets: Annotated[int, Field(ge=1)] = 5
    min_window_length: Annotated[int, Field(ge=1)] = 5
    grace_period: Annotated[int, Field(ge=1)] = 10
    min_samples: Annotated[int, Field(ge=0)] = 100


def build(cfg: Config, features: Sequence[str]) -> Detector:
    """An ADWIN detector.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> det = build(Config(), features=[])
    >>> det.update((rng.random(2000) < 0.1).astype(float))
    >>> det.check().status
    'ok'
    >>> det.update((rng.random(1000) < 0.5).astype(float))
    >>> s = det.check()
    >>> s.status, s.onset
    ('drift', ...)
    """
    return from_config("ADWIN", cfg, features)
