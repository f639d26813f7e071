"""The churn table end to end (configs/churn.yaml): a categorical plan, yes/no labels,
missing values, a timestamp; a drift planted in the plan mix is detected, retrained on
and promoted; an unseen plan is scored in the unknown bucket; a row missing a ``refuse``
column is quarantined with its reason."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from runtime.config import load_config
from runtime.daemon import Daemon
from runtime.store.db import quarantine
from runtime.store.unit import load_unit, preprocessing
from strategies.tabular import category_code

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def churn(tmp_path_factory: pytest.TempPathFactory) -> Daemon:
    base = tmp_path_factory.mktemp("churn")
    configs = base / "configs"
    (configs / "data" / "churn").mkdir(parents=True)
    shutil.copy(ROOT / "configs" / "churn.yaml", configs / "churn.yaml")
    gen = configs / "data" / "churn" / "generate.py"
    shutil.copy(ROOT / "configs" / "data" / "churn" / "generate.py", gen)
    spec = importlib.util.spec_from_file_location("churn_generate", gen)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main()
    cfg = load_config(configs / "churn.yaml")
    d = Daemon(cfg)
    d.run(until_drained=True)
    return d


@pytest.mark.slow
def test_churn_bootstraps_detects_the_plan_mix_retrains_and_promotes(churn: Daemon) -> None:
    kinds = [e.kind for e in churn.events.list(limit=100000)]
    assert "drift.detected" in kinds
    assert "model.promoted" in kinds[kinds.index("drift.detected"):]
    assert churn.registry.champion() not in (None, "v1")


@pytest.mark.slow
def test_unseen_plan_is_scored_and_a_missing_refuse_column_quarantined(churn: Daemon) -> None:
    with churn.db.connect() as conn:
        reasons = [r[0] for r in conn.execute(select(quarantine.c.reason))]
    assert len(reasons) == 3
    assert all("feature 'tenure' is missing" in r for r in reasons)
    assert not any("plan" in r for r in reasons)
    unit = load_unit(churn.registry, churn.cfg, "v1")
    prep = preprocessing(unit.meta)
    assert prep is not None
    plan = prep.columns[0]
    assert sorted(plan.vocab) == ["basic", "pro", "team"]
    x = np.array([[category_code("enterprise"), 12.0, np.nan]])
    assert prep.unknown_rate(x) == {"plan": 1.0}
    import torch

    out = unit.model(torch.as_tensor(x, dtype=torch.float32))
    assert torch.isfinite(out).all()
