"""Page-Hinkley: a CUSUM test on the deviation from the running mean."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from detectors.base import Detector
from detectors.river_adapter import from_config


class Config(BaseModel):
    """Page-Hinkley accumulates ``x - mean - delta`` (with forgetting ``alpha``) and alarms
    when the sum rises ``threshold`` above its minimum (Page, Biometrika 1954).

    ``threshold`` and ``delta`` are in units of the signal: the defaults suit a 0/1 error
    stream. ``mode`` defaults to ``"up"`` (river's default is ``"both"``, which also alarms
    on falling error and on stationary noise); use ``"down"`` for confidence.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["pagehinkley"] = "pagehinkley"
    name: str | None = None
    signal: str = "error"
    min_instances: Annotated[int, Field(ge=1)] = 30
    delta: Annotated[float, Field(ge=0)] = 0.005
    threshold: Annotated[float, Field(gt=0)] = 50.0
    alpha: Annotated[float, Field(gt=0, le=1)] = 1 - 0.0001
    mode: Literal["up", "down", "both"] = "up"
    min_samples: Annotated[int, Field(ge=0)] = 100


def build(cfg: Config, features: Sequence[str]) -> Detector:
    """A Page-Hinkley detector.

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
    return from_config("PageHinkley", cfg, features)
