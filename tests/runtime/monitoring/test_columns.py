"""The detectors a schema's columns add (issue 18): categorical columns watched as
categories and for unseen categories, the missing-value rate of columns that may miss."""

from __future__ import annotations

import numpy as np

from detectors import adwin, ks
from detectors.base import Detector, ReferenceDetector
from runtime.intake.settings import SchemaConfig
from runtime.monitoring.columns import ColumnDetectors, with_column_detectors
from strategies.tabular import category_code

FEATURES = ["plan", "tenure", "spend"]
CHURN = SchemaConfig(features=[
    {"name": "plan", "type": "categorical", "missing": "impute"},
    {"name": "tenure", "type": "numeric", "missing": "refuse"},
    {"name": "spend", "type": "numeric", "missing": "indicator"},
])
PLANS = np.array([category_code(p) for p in ("basic", "pro", "team", "enterprise")])


def _rows(rng: np.random.Generator, n: int, new_plan: float = 0.0, gaps: float = 0.03):
    plan = PLANS[rng.choice(3, n, p=[0.6, 0.3, 0.1])]
    plan[rng.random(n) < new_plan] = PLANS[3]
    spend = rng.lognormal(3.0, 0.4, n)
    spend[rng.random(n) < gaps] = np.nan
    return np.column_stack([plan, rng.integers(1, 61, n).astype(float), spend])


def _built(schema: SchemaConfig = CHURN) -> dict[str, Detector]:
    built: list[Detector] = []
    ColumnDetectors([ks.Config(), adwin.Config()], FEATURES, True).sync(built, schema, False)
    return {d.name: d for d in built}


def test_the_schema_fills_in_categorical_and_missing_value_detectors() -> None:
    out = {d.name or d.kind: d for d in with_column_detectors([adwin.Config()], CHURN)}
    assert (out["categories"].kind, out["categories"].features) == ("chi2", ["plan"])
    assert out["categories"].categorical == ["plan"]  # type: ignore[union-attr]
    assert (out["unseen_categories"].kind, out["unseen_categories"].features) == (
        "unseen", ["plan"])
    assert (out["missing_values"].kind, out["missing_values"].features) == (
        "missing", ["plan", "spend"])  # tenure is refused when missing: never reaches one
    assert out["adwin"] == adwin.Config()
    # a per-feature test over every feature already compares the plan as categories
    both = with_column_detectors([ks.Config(), adwin.Config()], CHURN)
    assert both[0].categorical == ["plan"]  # type: ignore[union-attr]
    assert "categories" not in [d.name for d in both]
    off = with_column_detectors([ks.Config()], CHURN, enabled=False)
    assert [d.kind for d in off] == ["ks"]


def test_numeric_columns_keep_the_configured_detectors() -> None:
    numeric = SchemaConfig(features=["a", "b"])
    configured = [ks.Config(), adwin.Config()]
    assert with_column_detectors(configured, numeric.with_types({})) == configured


def test_a_surge_of_unseen_categories_alarms_with_its_reason() -> None:
    rng = np.random.default_rng(0)
    for surge, alarms in ((0.0, False), (0.2, True)):
        det = _built()["unseen_categories"]
        assert isinstance(det, ReferenceDetector)
        det.set_reference(_rows(rng, 2000))
        det.update(_rows(rng, 500, new_plan=surge))
        sig = det.check()
        assert sig.drift is alarms
    assert sig.details["drifted"] == ["plan"]
    assert sig.details["reason"].startswith("unseen categories: plan ")


def test_a_rising_missing_value_rate_alarms_naming_the_column() -> None:
    rng = np.random.default_rng(1)
    for gaps, alarms in ((0.03, False), (0.3, True)):
        det = _built()["missing_values"]
        assert isinstance(det, ReferenceDetector)
        det.set_reference(_rows(rng, 2000))
        det.update(_rows(rng, 500, gaps=gaps))
        sig = det.check()
        assert sig.drift is alarms
    assert "missing values: spend" in sig.details["reason"]


def test_a_ks_test_on_the_features_counts_the_plan_as_categories() -> None:
    rng = np.random.default_rng(2)
    det = _built()["ks"]
    assert isinstance(det, ReferenceDetector)
    det.set_reference(_rows(rng, 2000))
    det.update(_rows(rng, 500))
    rows = {r["feature"]: r for r in det.check().details["features"]}
    assert rows["plan"]["type"] == "categorical" and rows["tenure"]["type"] == "numeric"


def test_types_inferred_later_add_their_detectors_on_the_next_sync() -> None:
    inferred = SchemaConfig(features=FEATURES, allow_nan=True)
    cols = ColumnDetectors([adwin.Config()], FEATURES, True)
    built: list[Detector] = []
    cols.sync(built, inferred, rebuild=False)
    assert "unseen_categories" not in [d.name for d in built]
    added = cols.sync(built, inferred.with_types({"plan": "categorical"}), rebuild=True)
    assert {"categories", "unseen_categories"} <= set(added)
    assert cols.sync(built, inferred.with_types({"plan": "categorical"}), rebuild=True) == []
