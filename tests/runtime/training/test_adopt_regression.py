"""``driftloop adopt`` with ``task: regression``: a regression MLP trained in a plain
PyTorch script becomes v1, measured by MAE on the bootstrap's splits, with its output
scale kept (or the identity when the file has none)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from runtime.cli.main import main
from runtime.config import load_config
from runtime.daemon import Daemon
from runtime.review.story import story
from runtime.store.db import Database
from runtime.store.events import EventLog
from runtime.store.unit import golden_sets, load_unit
from runtime.store.versions import Registry
from runtime.training.bootstrap import split_rows
from strategies.models import MLP, fit_normalization

N = 300


def _rows(tmp: Path) -> tuple[Path, pd.DataFrame]:
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=N), rng.normal(size=N)
    frame = pd.DataFrame({"row_id": [f"r{i}" for i in range(N)], "a": a, "b": b,
                          "y": 3 * a - b + 10 + 0.1 * rng.normal(size=N)})
    path = tmp / "rows.csv"
    frame.to_csv(path, index=False)
    return path, frame


def _config(tmp: Path) -> Path:
    (tmp / "inbox").mkdir(exist_ok=True)
    path = tmp / "c.yaml"
    path.write_text(yaml.safe_dump({
        "state_dir": str(tmp / "state"), "seed": 2, "task": "regression",
        "schema": {"features": ["a", "b"], "label": "y"},
        "source": {"kind": "directory", "path": str(tmp / "inbox")},
        "model": {"kind": "mlp", "hidden": [16]},
        "detectors": [{"kind": "adwin", "signal": "error"}],
        "retrain": {"reference_size": 100},
    }))
    return path


def _trained(frame: pd.DataFrame, target: tuple[float, float] | None) -> MLP:
    """A user's own regression fit: plain PyTorch, the MLP class alone."""
    x = torch.tensor(frame[["a", "b"]].to_numpy(), dtype=torch.float32)
    y = torch.tensor(frame["y"].to_numpy(), dtype=torch.float32)
    torch.manual_seed(0)
    model = MLP(2, 1, [16], 0.0, target)
    fit_normalization(model, x)
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x).squeeze(1), y).backward()
        opt.step()
    return model.eval()


@pytest.mark.parametrize("target", [None, (10.0, 3.2)], ids=["target-units", "scaled"])
def test_a_regression_model_becomes_v1_measured_by_mae(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: tuple[float, float] | None
) -> None:
    data, frame = _rows(tmp_path)
    conf = _config(tmp_path)
    model = _trained(frame, target)
    weights = tmp_path / "model.pt"
    torch.save(model.state_dict(), weights)
    assert main(["adopt", "--config", str(conf), "--weights", str(weights),
                 "--data", str(data)]) == 0, capsys.readouterr().err
    assert "golden mae" in capsys.readouterr().out

    cfg = load_config(conf)
    db = Database.for_state_dir(cfg.state_dir, None)
    events = EventLog(db)
    registry = Registry(db, cfg.state_dir / "models", events)
    meta = registry.get("v1").meta
    m = meta["metrics"]
    assert m["golden_mae"] < 0.25 * m["val_mae_of_mean"] and m["val_rmse"] >= m["val_mae"]
    assert "golden_accuracy" not in m
    mean, std = target or (0.0, 1.0)
    assert meta["target"] == pytest.approx({"mean": mean, "std": std})
    unit = load_unit(registry, cfg, "v1", with_buffer=True)
    x = torch.tensor(frame[["a", "b"]].to_numpy(), dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(unit.model(x), model(x))  # the user's model, as it was
    split = split_rows(cfg, N)
    _, gy = golden_sets(registry, ["v1"])["v1"]
    np.testing.assert_allclose(gy, frame["y"].to_numpy()[split.gold])  # targets, not classes
    assert unit.buffer is not None and unit.buffer.tensors()[1].dtype == torch.float32
    assert story(events.list())[0].headline.startswith("v1 adopted from model.pt: golden-set MAE")
    db.dispose()

    daemon = Daemon(cfg)  # the loop takes it from there
    daemon.open()
    try:
        assert daemon.unit is not None and daemon.unit.version == "v1"
    finally:
        daemon.close()
