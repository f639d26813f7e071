"""The ``policy`` section: how alarms become retrains, the retrain triggers besides drift,
the cadence and the label-free estimate (:mod:`runtime.config` composes it)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def _seconds(value: object) -> object:
    """``90``, ``"90s"``, ``"15m"``, ``"12h"``, ``"7d"``, ``"2w"`` → seconds."""
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", value)
        if m is None:
            raise ValueError(f"{value!r} is not a duration (e.g. 90, 90s, 15m, 12h, 7d, 2w)")
        return float(m.group(1)) * _UNITS[m.group(2) or "s"]
    return value


Duration = Annotated[float, BeforeValidator(_seconds), Field(gt=0)]
"""Seconds, written as a number or with a unit (``s``, ``m``, ``h``, ``d``, ``w``)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScheduleTrigger(_Model):
    """Retrain on a clock: ``every`` (an interval) or ``cron`` (five crontab fields, UTC)."""

    every: Duration | None = None
    cron: str | None = None

    @model_validator(mode="after")
    def _one(self) -> ScheduleTrigger:
        if (self.every is None) == (self.cron is None):
            raise ValueError("schedule needs exactly one of every or cron")
        if self.cron is not None and len(self.cron.split()) != 5:
            raise ValueError(f"cron {self.cron!r} needs five fields (minute hour day month dow)")
        return self


class LabelledRowsTrigger(_Model):
    """Retrain every ``every`` new labelled rows (counted since the last retrain request)."""

    every: int = Field(gt=0)


class AccuracyFloorTrigger(_Model):
    """Retrain when the champion's realized accuracy over its last ``window`` labelled rows
    is below ``below``."""

    below: float = Field(gt=0, le=1)
    window: int = Field(default=500, ge=10)


class MaxAgeTrigger(_Model):
    """Retrain a champion older than ``champion_older_than``, or one whose newest training
    row is older than ``data_older_than`` (once per champion)."""

    champion_older_than: Duration | None = None
    data_older_than: Duration | None = None

    @model_validator(mode="after")
    def _some(self) -> MaxAgeTrigger:
        if self.champion_older_than is None and self.data_older_than is None:
            raise ValueError("max_age needs champion_older_than or data_older_than")
        return self


class TriggersConfig(_Model):
    """What may request a retrain besides (or with) drift.

    ``combine: any`` requests on the first that is due; ``all`` only when every enabled
    one (drift included while ``drift`` is true) is due at once. Cooldown, ``min_samples``
    and at most one pending retrain apply to every kind alike.
    """

    drift: bool = True
    combine: Literal["any", "all"] = "any"
    schedule: ScheduleTrigger | None = None
    labelled_rows: LabelledRowsTrigger | None = Field(
        default_factory=lambda: LabelledRowsTrigger(every=2000))
    """On by default (every 2,000 labelled rows without a retrain request): the backstop
    that lets a model adapt where its detectors stay quiet (a slow drift; bench/
    real_streams.py's weather and employment streams); ``null`` turns it off."""
    accuracy_floor: AccuracyFloorTrigger | None = None
    max_age: MaxAgeTrigger | None = None

    @property
    def kinds(self) -> list[str]:
        """The enabled kinds besides drift, in the order they are checked."""
        return [k for k in ("labelled_rows", "accuracy_floor", "schedule", "max_age")
                if getattr(self, k) is not None]



class CadenceConfig(_Model):
    """Gaps between retrains that follow what retraining bought (runtime/monitoring/
    cadence.py): ``cooldown_rows`` and the ``labelled_rows`` backstop are scaled by a
    factor, halved (down to ``min_factor``) after a retrain that cut at least
    ``faster_gain`` of the champion's new-data error and doubled (up to ``max_factor``)
    after one that cut less than ``slower_gain``. By default only ever faster than
    configured (``max_factor`` 1): where retrains keep paying (a stale champion) they come
    up to twice as often, and where they stop paying the gaps return to the configured
    ones. ``max_factor`` above 1 also stretches them past it (lost on flights: the module
    says by how much)."""

    enabled: bool = True
    faster_gain: float = Field(default=0.10, gt=0, le=1)
    slower_gain: float = Field(default=0.03, ge=0, le=1)
    min_factor: float = Field(default=0.5, gt=0, le=1)
    max_factor: float = Field(default=1.0, ge=1)

    @model_validator(mode="after")
    def _order(self) -> CadenceConfig:
        if self.slower_gain > self.faster_gain:
            raise ValueError("cadence.slower_gain must not exceed faster_gain")
        return self


class EstimateConfig(_Model):
    """The champion's accuracy estimated from its calibrated confidence, without labels
    (CBPE; runtime/monitoring/estimate.py; ``enabled: false`` records and shows none).

    ``calibration``: how each version's probabilities are calibrated on its golden set
    when it is made (``none``: they are taken as they are). ``window``: the live rows
    each policy estimate covers. An alert (``drift.detected`` by ``estimated_accuracy``)
    when the band's upper end falls below ``alert_below``; with ``request_labels`` > 0
    it also records ``labels.requested`` naming that many of the window's least
    confident unlabelled rows. ``band_z``: the band's width in standard errors.
    """

    enabled: bool = True
    calibration: Literal["temperature", "isotonic", "none"] = "temperature"
    window: int = Field(default=500, ge=20)
    alert_below: float | None = Field(default=None, gt=0, le=1)
    request_labels: int = Field(default=0, ge=0, le=10_000)
    band_z: float = Field(default=1.96, gt=0)


class PolicyConfig(_Model):
    """Turns detector signals into decisions."""

    warmup_rows: int = Field(default=500, ge=0)
    min_samples: int = Field(default=1000, gt=0)
    """Labelled rows since a drift's onset before its retrain is requested: a drift retrain
    learns the new regime from them. 1,000 (with ``cooldown_rows`` 2,000): on bench/
    real_streams.py the error detectors fire every 1,500-2,000 rows on Electricity and
    flights, and at 400 / 1,000 the loop retrained on ~600 rows of each passing rise and
    lost to a fixed schedule with as many retrains (issue 16)."""
    cooldown_rows: int = Field(default=2000, ge=0)
    retrain_on: list[str] = Field(default=["error", "loss"])
    retrain_on_feature_drift: bool = False
    retrain_when_error_falls: bool = False
    """An alarm on ``error`` or ``loss`` that reports a fall (the champion got better: a
    mean after the change below the mean before it, or CUSUM's ``mean_down`` branch)
    alerts instead of retraining."""
    refresh_reference_on_feature_drift: bool = True
    hysteresis_rows: int = Field(default=0, ge=0)
    """A detector's alarm within this many rows of its previous one continues that drift
    (suppressed); the detector re-arms after this many rows without an alarm."""
    vote_k: int = Field(default=1, ge=1)
    """Act only when at least this many distinct detectors (of ``vote_among``) alarmed
    within ``vote_window_rows`` rows."""
    vote_among: list[str] | None = None
    """Detector names that vote (``None``: all); the others act alone."""
    vote_window_rows: int = Field(default=1000, ge=1)
    triggers: TriggersConfig = Field(default_factory=TriggersConfig)
    """Retrain triggers besides drift (runtime/monitoring/triggers.py)."""
    cadence: CadenceConfig = Field(default_factory=CadenceConfig)
    """Gaps between retrains scaled by what recent retrains bought (monitoring/cadence.py)."""
    estimate: EstimateConfig = Field(default_factory=EstimateConfig)
    """Label-free accuracy estimate of the champion (runtime/monitoring/estimate.py)."""
