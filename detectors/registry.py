"""Detectors by ``kind``.

Adding a detector is one module with ``Config`` (``kind: Literal["<module name>"]``) and
``build(cfg, features)``, plus one entry in :data:`DETECTORS` and one member in
:data:`DetectorConfig` (a test checks that the two agree).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, Field

from detectors import adwin, ddm, eddm, fhddm, hddm_a, hddm_w, ks, kswin, pagehinkley
from detectors.base import Detector


class DetectorModule(Protocol):
    """What a detector module provides."""

    @property
    def Config(self) -> type[BaseModel]: ...

    def build(self, cfg: Any, features: Sequence[str]) -> Detector: ...


DETECTORS: dict[str, DetectorModule] = {
    "adwin": adwin,
    "ddm": ddm,
    "eddm": eddm,
    "fhddm": fhddm,
    "hddm_a": hddm_a,
    "hddm_w": hddm_w,
    "ks": ks,
    "kswin": kswin,
    "pagehinkley": pagehinkley,
}

DetectorConfig = Annotated[
    adwin.Config
    | ddm.Config
    | eddm.Config
    | fhddm.Config
    | hddm_a.Config
    | hddm_w.Config
    | ks.Config
    | kswin.Config
    | pagehinkley.Config,
    Field(discriminator="kind"),
]


def build(cfg: DetectorConfig, features: Sequence[str]) -> Detector:
    """The detector that ``cfg`` describes, chosen by ``cfg.kind``; ``features`` are the
    schema's feature names, in the column order of the rows the runtime hands in.

    Examples
    --------
    >>> det = build(adwin.Config(name="err"), features=["x"])
    >>> det.name, det.signal
    ('err', 'error')
    """
    return DETECTORS[cfg.kind].build(cfg, features)


def default_univariate() -> list[DetectorConfig]:
    """The default detectors for one numeric stream: ADWIN on the error stream.

    ADWIN is two-sided, needs no scale parameter (works on 0/1 errors, losses or
    confidences alike), bounds its false-alarm rate by ``delta`` (none in 10,000 rows of
    stationary noise in the conformance tests) and finds a 0.1 → 0.5 error-rate shift
    within ~100 rows; it is also the fastest of river's detectors.
    """
    return [adwin.Config()]
