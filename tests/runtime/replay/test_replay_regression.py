"""``driftloop replay`` with ``task: regression``: prequential MAE of the served values on
a generated stream whose relation flips half way; the loop retrains on the absolute
residual's drift and beats never retraining; tables, JSON and frontier speak MAE."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from runtime.cli.main import main
from runtime.config import DriftloopConfig, parse_config
from runtime.replay.compare import Options, frontier, run_schedule, summary, table
from runtime.replay.engine import LoopReplay, Schedule
from runtime.replay.stream import LoggedStream
from runtime.store.db import Database
from runtime.store.served import realized

ROWS, FLIP, BOOT = 2400, 1200, 400


def shifting_stream(n: int = ROWS, seed: int = 5) -> pd.DataFrame:
    """y = 2 a + b + noise before row FLIP, -2 a + b + 3 after it."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    y = 2 * x[:, 0] + x[:, 1]
    y[FLIP:] = -2 * x[FLIP:, 0] + x[FLIP:, 1] + 3
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "y": y + 0.1 * rng.normal(size=n)})


def config_data(tmp: Path) -> dict[str, Any]:
    return {
        "state_dir": str(tmp / "state"), "task": "regression",
        "schema": {"features": ["a", "b"], "label": "y"},
        "source": {"kind": "directory", "path": str(tmp / "in")},
        "model": {"kind": "mlp", "hidden": [16]},
        "bootstrap": {"rows": BOOT, "epochs": 20},
        "detectors": [{"kind": "adwin", "signal": "error"}],
        "policy": {"warmup_rows": 100, "min_samples": 300, "cooldown_rows": 300},
        "retrain": {"strategy": {"kind": "finetune", "lr": 0.01}, "budget": {"epochs": 20},
                    "buffer": {"kind": "reservoir", "capacity": 300},
                    "min_rows": 1},  # the rows since the onset alone
        "gate": {"max_forgetting": 10.0},
        "watch": {"rows": 0},
    }


@pytest.fixture
def cfg(tmp_path: Path) -> DriftloopConfig:
    return parse_config(config_data(tmp_path))


def test_the_loop_lowers_the_prequential_mae(cfg: DriftloopConfig, tmp_path: Path) -> None:
    stream = LoggedStream(shifting_stream(), cfg.schema)
    assert stream.y.dtype == np.float64
    loop = LoopReplay(cfg, stream, Schedule("drift"), batch_rows=100).run(tmp_path / "run")
    never = run_schedule(cfg, stream, Schedule("never", gate=False), Options(batch_rows=100))
    assert loop.metric == never.metric == "mae" and np.isnan(loop.accuracy)
    scored = loop.correct[BOOT:]
    assert not np.isnan(scored).any() and (scored >= 0).all()  # absolute residuals
    assert loop.count("promoted") >= 1
    assert loop.value < 0.7 * never.value  # v1's MAE after the flip is about 2.3
    assert loop.score > never.score
    db = Database.for_state_dir(tmp_path / "run", None)
    assert realized(db, window=ROWS, metric="mae").value == pytest.approx(loop.value, abs=1e-9)
    db.dispose()
    out = summary(loop)
    assert out["mae"] == round(loop.value, 4) and "accuracy" not in out
    assert "| run | prequential MAE |" in table([loop, never])
    assert frontier([loop, never]) == [True, True]  # better, but with more retrains


def test_the_cli_replays_a_regression_stream(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "stream.csv"
    shifting_stream(1600).to_csv(data, index=False)
    conf = tmp_path / "c.yaml"
    conf.write_text(yaml.safe_dump(config_data(tmp_path)))
    out = tmp_path / "r.json"
    assert main(["replay", "-c", str(conf), "--data", str(data), "-q", "--json", str(out)]) == 0
    assert "prequential MAE" in capsys.readouterr().out
    runs = json.loads(out.read_text())["runs"]
    assert runs[0]["name"] == "driftloop" and runs[0]["mae"] > 0
