"""The detectors a schema's columns add to the configured ones.

Categorical columns are watched as categories: a per-feature test the config names
(chi-squared, PSI, Jensen-Shannon, KS, …) without its own ``categorical`` list compares
the schema's categorical columns by their category counts instead of as numbers (a
stored category is a hash code: its numeric value means nothing), and, unless the config
already watches them so, a chi-squared test (``categories``) and an unseen-category share
(``unseen_categories``) are added for them. Columns whose missing values are imputed or
flagged (not quarantined) get a missing-value rate (``missing_values``). Numeric columns
keep the configured detectors only. ``schema_detectors: false`` turns the additions off.
"""

from __future__ import annotations

from typing import Any

from detectors import chi2, missing, unseen
from detectors.base import Detector
from detectors.registry import DetectorConfig
from detectors.registry import build as build_detector
from runtime.intake.settings import SchemaConfig

CATEGORIES, UNSEEN, MISSING = "categories", "unseen_categories", "missing_values"


def categorical_columns(schema: SchemaConfig) -> list[str]:
    """The features typed (declared or inferred) categorical."""
    return [f for f in schema.features if schema.column(f).type == "categorical"]


def _as_categories(d: DetectorConfig, cats: list[str]) -> DetectorConfig:
    """``d`` comparing the categorical columns it watches by their counts, when it is a
    per-feature test that names no categorical columns itself."""
    if "categorical" not in type(d).model_fields or "categorical" in d.model_fields_set:
        return d
    watched = getattr(d, "features", None)
    own = [c for c in cats if watched is None or c in watched]
    return d.model_copy(update={"categorical": own}) if own else d


def _watches_as_categories(configured: list[DetectorConfig], cats: list[str]) -> bool:
    return any(set(cats) <= set(getattr(d, "categorical", []) or []) for d in configured)


def with_column_detectors(
    configured: list[DetectorConfig], schema: SchemaConfig, enabled: bool = True
) -> list[DetectorConfig]:
    """The configured detectors (categorical columns counted as categories) and, when
    ``enabled``, those the columns add (see the module docstring)."""
    cats = categorical_columns(schema)
    out = [_as_categories(d, cats) for d in configured]
    if not enabled:
        return out
    names = {d.name or d.kind for d in out}
    kinds = {d.kind for d in out}
    extra: list[Any] = []
    if cats and not _watches_as_categories(out, cats):
        extra.append(chi2.Config(name=CATEGORIES, features=cats, categorical=cats))
    if cats and "unseen" not in kinds:
        min_count = min(schema.column(c).min_count for c in cats)
        extra.append(unseen.Config(name=UNSEEN, features=cats, min_count=min_count))
    gaps = [f for f in schema.features if schema.missing_rule(f) != "refuse"]
    if gaps and "missing" not in kinds:
        extra.append(missing.Config(name=MISSING, features=gaps))
    return out + [d for d in extra if d.name not in names]


class ColumnDetectors:
    """Keeps a daemon's detector list in step with its schema's columns.

    A column's type inferred from the first rows is known only once they are stored, so
    :meth:`sync` runs again when a champion is adopted: detectors missing from ``built``
    are appended (the list is the one the detector feed holds); with ``rebuild`` (a
    re-baseline: their state is reset anyway) a detector whose effective config changed
    is built afresh in its place.
    """

    def __init__(self, configured: list[DetectorConfig], features: list[str], enabled: bool):
        self.configured = configured
        self.features = features
        self.enabled = enabled
        self.configs: dict[str, DetectorConfig] = {}

    def sync(self, built: list[Detector], schema: SchemaConfig, rebuild: bool) -> list[str]:
        """Update ``built`` in place; the names of the detectors added or rebuilt."""
        changed = []
        for d in with_column_detectors(self.configured, schema, self.enabled):
            name = d.name or d.kind
            at = next((i for i, b in enumerate(built) if b.name == name), None)
            if at is not None and (not rebuild or self.configs.get(name) == d):
                self.configs.setdefault(name, d)
                continue
            det = build_detector(d, self.features)
            if at is None:
                built.append(det)
            else:
                built[at] = det
            self.configs[name] = d
            changed.append(name)
        return changed
