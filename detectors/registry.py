"""Detectors by ``kind``.

Adding a detector is one module with ``Config`` (``kind: Literal["<module name>"]``) and
``build(cfg, features)``, plus one entry in :data:`DETECTORS` and one member in
:data:`DetectorConfig` (a test checks that the two agree).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, Field

from detectors import (
    adwin,
    chi2,
    classifier,
    cusum,
    cvm,
    ddm,
    eddm,
    fhddm,
    hddm_a,
    hddm_w,
    jensenshannon,
    ks,
    kswin,
    missing,
    mmd,
    pagehinkley,
    psi,
    unseen,
    wasserstein,
)
from detectors.base import Detector


class DetectorModule(Protocol):
    """What a detector module provides."""

    @property
    def Config(self) -> type[BaseModel]: ...

    def build(self, cfg: Any, features: Sequence[str]) -> Detector: ...


DETECTORS: dict[str, DetectorModule] = {
    "adwin": adwin,
    "chi2": chi2,
    "classifier": classifier,
    "cusum": cusum,
    "cvm": cvm,
    "ddm": ddm,
    "eddm": eddm,
    "fhddm": fhddm,
    "hddm_a": hddm_a,
    "hddm_w": hddm_w,
    "jensenshannon": jensenshannon,
    "ks": ks,
    "kswin": kswin,
    "missing": missing,
    "mmd": mmd,
    "pagehinkley": pagehinkley,
    "psi": psi,
    "unseen": unseen,
    "wasserstein": wasserstein,
}

DetectorConfig = Annotated[
    adwin.Config
    | chi2.Config
    | classifier.Config
    | cusum.Config
    | cvm.Config
    | ddm.Config
    | eddm.Config
    | fhddm.Config
    | hddm_a.Config
    | hddm_w.Config
    | jensenshannon.Config
    | ks.Config
    | kswin.Config
    | missing.Config
    | mmd.Config
    | pagehinkley.Config
    | psi.Config
    | unseen.Config
    | wasserstein.Config,
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
    """The default detectors for one numeric stream: a CUSUM and ADWIN, either may alarm.

    :mod:`detectors.cusum` watches the mean (both ways) and the variance (both ways),
    calibrates its thresholds on a reference of the first values for a configured
    false-alarm budget, and runs vectorised; it is designed for shifts of half a standard
    deviation or more, which it finds sooner than ADWIN. ADWIN (:mod:`detectors.adwin`)
    needs no shift size: it finds the small, persistent mean shifts below CUSUM's design
    size (a classifier's error rate creeping up by a few points, say), with rare false
    alarms. Their false alarms add up; bench/detectors.py measures the pair as one.
    """
    return [cusum.Config(), adwin.Config()]
