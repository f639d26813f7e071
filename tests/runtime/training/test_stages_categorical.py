"""A staged bootstrap over a table with a categorical column, string classes and missing
values: every stage file is read by the ingest rules, v1's preprocessing is learned from
the bootstrap rows and the stage files, saved with v1, and the daemon then monitors with
it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from runtime.config import DriftloopConfig, parse_config
from runtime.daemon import Daemon
from runtime.store.unit import load_unit, preprocessing
from runtime.training.bootstrap import BootstrapError
from strategies.tabular import category_code

FAST = {"kind": "finetune", "lr": 0.01, "batch_size": 32}


def _table(path: Path, n: int, seed: int, plans: list[str], first: int = 0) -> Path:
    """Churn-like rows: ``plan`` (text), ``tenure`` (a few blank), ``churned`` yes/no."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(plans, n)
    tenure = rng.integers(1, 61, n).astype(float)
    churn = np.where(np.isin(plan, ["basic", "enterprise"]), tenure < 40, tenure < 10)
    frame = pd.DataFrame({"row_id": [f"r{first + i}" for i in range(n)], "plan": plan,
                          "tenure": tenure, "churned": np.where(churn, "yes", "no")})
    frame["tenure"] = frame["tenure"].astype(object)
    frame.loc[::50, "tenure"] = ""  # missing now and then: imputed
    frame.to_csv(path, index=False)
    return path


def _cfg(tmp: Path, stages: list[dict[str, object]]) -> DriftloopConfig:
    (tmp / "stream").mkdir(exist_ok=True)
    _table(tmp / "stream" / "part-001.csv", 300, 3, ["basic", "pro", "team"], first=10_000)
    return parse_config({
        "state_dir": str(tmp / "state"), "seed": 2,
        "schema": {"features": ["plan", {"name": "tenure", "missing": "impute"}],
                   "label": "churned", "classes": ["no", "yes"]},
        "source": {"kind": "directory", "path": str(tmp / "stream")},
        "model": {"kind": "mlp", "hidden": [16]},
        "bootstrap": {"data": str(_table(tmp / "task.csv", 300, 1, ["basic", "pro", "team"])),
                      "rows": 300},
        "stages": stages,
        "detectors": [{"kind": "adwin", "signal": "error"}],
        "retrain": {"buffer": {"kind": "reservoir", "capacity": 300}},
    }, origin="test")


def test_a_staged_bootstrap_trains_a_table_with_a_categorical_column(tmp_path: Path) -> None:
    broad = _table(tmp_path / "broad.csv", 400, 2, ["basic", "pro", "team", "enterprise"])
    cfg = _cfg(tmp_path, [
        {"name": "pretrain", "data": str(broad), "strategy": FAST, "budget": {"epochs": 4},
         "exit": [{"metric": "accuracy", "min": 0.6}]},
        {"name": "finetune", "strategy": {**FAST, "kind": "replay", "mix": 0.3,
                                          "adapt": {"freeze": ["inner.net.0.*"]}},
         "budget": {"epochs": 4}, "exit": [{"metric": "loss", "max": 5.0}]},
    ])
    lines: list[str] = []
    daemon = Daemon(cfg, report=lines.append)
    assert daemon.bootstrap() == "v1"
    assert any("plan categorical (inferred)" in line for line in lines), lines
    daemon.run(until_drained=True)  # monitors the stream with v1's encoding
    unit = load_unit(daemon.registry, cfg, "v1", with_buffer=True)
    prep = preprocessing(unit.meta)
    assert prep is not None
    plan = next(c for c in prep.columns if c.name == "plan")
    assert sorted(plan.vocab) == ["basic", "enterprise", "pro", "team"]  # stage file's too
    assert [s["stage"] for s in unit.meta["stages"]] == ["pretrain", "finetune"]
    x = torch.tensor([[category_code("pro"), np.nan], [category_code("gold"), 30.0]])
    assert torch.isfinite(unit.model(x)).all()  # missing imputed, unseen plan: unknown
    assert daemon.db is not None
    kinds = [e.kind for e in daemon.events.list(limit=10000)]
    assert "ingest.rejected" not in kinds  # no row quarantined for its plan or a blank
    daemon.close()


def test_a_bad_stage_row_is_one_line_naming_it(tmp_path: Path) -> None:
    broad = _table(tmp_path / "broad.csv", 100, 2, ["basic", "pro"])
    frame = pd.read_csv(broad, dtype=object, keep_default_na=False)
    frame.loc[4, "churned"] = "maybe"
    frame.to_csv(broad, index=False)
    cfg = _cfg(tmp_path, [{"name": "pretrain", "data": str(broad), "strategy": FAST}])
    with pytest.raises(BootstrapError, match=r"row 5: unknown label 'maybe'"):
        Daemon(cfg).bootstrap()
