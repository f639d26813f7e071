"""A real regression stream end to end (configs/trump_approval.yaml, river's bundled
TrumpApproval exported to CSV): v1 bootstraps below the mean predictor's MAE, the absolute
residual drifts, a retrain is gated on MAE (promoted or refused with its reason), and the
review page speaks MAE."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from runtime.config import load_config
from runtime.daemon import Daemon
from runtime.review.collect import collect
from runtime.review.page import render
from runtime.store import events as ev

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def trump(tmp_path_factory: pytest.TempPathFactory) -> Daemon:
    base = tmp_path_factory.mktemp("trump")
    configs = base / "configs"
    (configs / "data" / "trump_approval").mkdir(parents=True)
    shutil.copy(ROOT / "configs" / "trump_approval.yaml", configs / "trump_approval.yaml")
    gen = configs / "data" / "trump_approval" / "export.py"
    shutil.copy(ROOT / "configs" / "data" / "trump_approval" / "export.py", gen)
    spec = importlib.util.spec_from_file_location("trump_export", gen)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(gen.parent)
    d = Daemon(load_config(configs / "trump_approval.yaml"))
    d.run(until_drained=True)
    return d


@pytest.mark.slow
def test_bootstrap_drift_retrain_and_an_mae_gate(trump: Daemon) -> None:
    got = trump.events.list(limit=100000)
    kinds = [e.kind for e in got]
    v1 = next(e for e in got if e.kind == ev.STAGE_FINISHED).payload
    assert v1.passed and v1.metrics["val_mae"] < 0.5 * v1.metrics["val_mae_of_mean"]
    assert "drift.detected" in kinds and "retrain.finished" in kinds
    gates = [e.payload for e in got if e.kind in (ev.GATE_PASSED, ev.GATE_FAILED)]
    assert gates and all(c.metric == "mae" for g in gates for c in g.checks)
    new = [c for g in gates for c in g.checks if c.name == "new_data"]
    assert all(c.candidate < c.champion for c in new)  # retrained on the drift: lower MAE
    promoted = "model.promoted" in kinds[kinds.index("drift.detected"):]
    refused_with_reason = all(any("MAE" in c.reason for c in g.checks if not c.passed)
                              for g in gates if not g.passed)
    assert promoted or refused_with_reason


@pytest.mark.slow
def test_the_review_page_shows_mae(trump: Daemon) -> None:
    review = collect(trump.cfg.state_dir, trump.db, trump.events, trump.registry, trump.cfg)
    html = render(review, report_href=lambda name: name)
    assert "Live MAE" in html and "realized MAE of the served predictions" in html
    assert "validation MAE" in html
    assert review.realized.overall is not None and 0 < (review.realized.overall.value or 0) < 5


@pytest.mark.slow
def test_predict_returns_values_in_target_units(trump: Daemon) -> None:
    from fastapi.testclient import TestClient

    from runtime.config import ApiConfig
    from runtime.service.api import create_app

    client = TestClient(create_app(trump, ApiConfig(token_env=None), None))  # type: ignore[arg-type]
    rows = [[44.0, 40.0, 45.0, 46.0, 41.0], [38.0, 37.0, 40.0, 44.0, 39.0]]
    body = client.post("/v1/predict", json={"rows": rows}).json()
    assert body["classes"] == [] and body["probabilities"] == []
    values = body["predictions"]
    assert all(isinstance(v, float) and 30 < v < 55 for v in values)
    assert values[0] > values[1]  # higher polls, higher approval


@pytest.mark.slow
def test_status_shows_the_realized_and_estimated_mae(trump: Daemon) -> None:
    from runtime.review.text import status_dict, status_text
    from runtime.store.estimated_mae import estimated_mae
    from runtime.store.served import served_versions

    st = status_dict(trump.cfg.state_dir, trump.db, trump.events, trump.registry)
    assert st["realized_accuracy"]["metric"] == "mae" and st["estimated_accuracy"] is None
    text = status_text(st)
    assert "realized:    mae " in text
    est = st["estimated_mae"]  # the loss model's expected MAE, no labels needed
    assert est["version"] == st["champion"]
    if est["value"] is None:  # promoted on the stream's last rows: it has served none
        assert "estimated:   - (no loss model, or no row monitored" in text
        est = estimated_mae(trump.db, served_versions(trump.db)[-1])
    else:
        assert f"estimated:   MAE {est['value']:.4g}" in text
    assert est is not None and 0 < est["value"] < 10 and est["rows"] > 0
    vs = est["versus_realized"]
    assert vs is not None and vs["rows"] > 0 and vs["realized"]["metric"] == "mae"
