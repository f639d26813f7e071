"""``driftloop adopt``: a model trained outside driftloop becomes v1, split as the bootstrap
splits its rows; bad weights are refused in one line."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import save_file

from runtime.cli.main import main
from runtime.config import DriftloopConfig, load_config
from runtime.daemon import Daemon
from runtime.intake.demo_stream import AGRAWAL_FEATURES
from runtime.review.story import story
from runtime.store import events as ev
from runtime.store.db import Database
from runtime.store.events import EventLog
from runtime.store.unit import golden_sets, load_unit
from runtime.store.versions import Registry
from runtime.training.adopt import AdoptError, check_state, read_weights
from runtime.training.bootstrap import split_rows
from strategies.models import MLP, fit_normalization
from tests.runtime.processes import rows as synthetic

N = 300


def _rows_file(tmp: Path, n: int = N) -> Path:
    data = synthetic(n, seed=4)
    frame = pd.DataFrame([r[0] for r in data], columns=list(AGRAWAL_FEATURES))
    frame["class"] = [int(r[1]) for r in data]
    frame["row_id"] = [f"a{i}" for i in range(n)]
    path = tmp / "rows.csv"
    frame.to_csv(path, index=False)
    return path


def _config(tmp: Path, model: dict[str, Any] | None = None) -> Path:
    (tmp / "inbox").mkdir(exist_ok=True)
    cfg = {
        "state_dir": str(tmp / "state"),
        "seed": 2,
        "schema": {"features": list(AGRAWAL_FEATURES), "label": "class", "classes": [0, 1]},
        "source": {"kind": "directory", "path": str(tmp / "inbox")},
        "model": model or {"kind": "mlp", "hidden": [16]},
        "detectors": [{"kind": "adwin", "signal": "error"}],
        "retrain": {"reference_size": 100},
    }
    path = tmp / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _trained_mlp(data: Path, hidden: list[int]) -> MLP:
    """What a user does in a plain PyTorch script (no driftloop machinery but the class)."""
    frame = pd.read_csv(data)
    x = torch.tensor(frame[list(AGRAWAL_FEATURES)].to_numpy(), dtype=torch.float32)
    y = torch.tensor(frame["class"].to_numpy())
    torch.manual_seed(0)
    model = MLP(len(AGRAWAL_FEATURES), 2, hidden, 0.0)
    fit_normalization(model, x)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def _open(cfg: DriftloopConfig) -> tuple[Database, EventLog, Registry]:
    db = Database.for_state_dir(cfg.state_dir, None)
    events = EventLog(db)
    return db, events, Registry(db, cfg.state_dir / "models", events)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_state_dict_becomes_v1_split_as_the_bootstrap_splits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, conf = _rows_file(tmp_path), _config(tmp_path)
    model = _trained_mlp(data, [16])
    weights = tmp_path / "model.pt"
    torch.save(model.state_dict(), weights)
    code, out, err = _cli(capsys, "adopt", "--config", str(conf), "--weights", str(weights),
                          "--data", str(data))
    assert code == 0, err
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert f"champion: v1 (adopted from {weights}, sha256 {digest})" in out

    cfg = load_config(conf)
    db, events, registry = _open(cfg)
    assert registry.champion() == "v1"
    meta = registry.get("v1").meta
    assert meta["strategy"] == "adopted"
    assert meta["adopted"]["sha256"] == digest and meta["adopted"]["format"] == "torch state dict"
    split = split_rows(cfg, N)
    m = meta["metrics"]
    assert (m["golden_rows"], m["val_rows"], m["train_rows"]) == (
        len(split.gold), len(split.val), len(split.train))
    assert m["golden_accuracy"] > 0.7  # the user's model, measured on its golden rows
    unit = load_unit(registry, cfg, "v1", with_buffer=True)
    for name, tensor in model.state_dict().items():  # the user's weights, untouched
        assert torch.equal(unit.model.state_dict()[name], tensor)
    assert unit.buffer is not None and len(unit.buffer.tensors()[1]) == len(split.train)
    assert len(unit.reference) == 100
    gx, _ = golden_sets(registry, ["v1"])["v1"]
    frame = pd.read_csv(data)
    np.testing.assert_allclose(gx, frame[list(AGRAWAL_FEATURES)].to_numpy()[split.gold])
    promoted = events.list(kinds=[ev.MODEL_PROMOTED])
    assert [(e.model_version, e.raw["reason"]) for e in promoted] == [("v1", "adopted")]
    chapters = story(events.list())
    assert chapters[0].headline.startswith("v1 adopted from model.pt: golden-set accuracy 0.")
    db.dispose()

    # the daemon takes it from there: no bootstrap, v1 monitored like any champion
    daemon = Daemon(cfg)
    daemon.open()
    try:
        assert daemon.unit is not None and daemon.unit.version == "v1"
    finally:
        daemon.close()

    code, _, err = _cli(capsys, "adopt", "--config", str(conf), "--weights", str(weights),
                        "--data", str(data))
    assert code == 1 and "already has model versions (champion v1)" in err


def test_safetensors_and_a_users_own_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "usernet.py").write_text(textwrap.dedent("""
        import torch

        class Net(torch.nn.Module):
            def __init__(self, n_features, n_classes, width):
                super().__init__()
                self.body = torch.nn.Sequential(torch.nn.Linear(n_features, width),
                                                torch.nn.Tanh())
                self.out = torch.nn.Linear(width, n_classes)

            def forward(self, x):
                return self.out(self.body(x / 1000.0))

        def build(n_features, n_classes, width=8):
            return Net(n_features, n_classes, width)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import usernet

    data = _rows_file(tmp_path)
    conf = _config(tmp_path, {"factory": "usernet:build", "kwargs": {"width": 8}})
    weights = tmp_path / "net.safetensors"
    save_file(usernet.build(9, 2).state_dict(), weights)
    code, _, err = _cli(capsys, "adopt", "-c", str(conf), "--weights", str(weights),
                        "--data", str(data))
    assert code == 0, err
    db, _, registry = _open(load_config(conf))
    assert registry.get("v1").meta["adopted"]["format"] == "safetensors"
    db.dispose()


@pytest.mark.parametrize("model", [
    {"kind": "cnn", "shape": [1, 9], "channels": [4], "hidden": 8},
    {"kind": "text", "encoder_layers": 1},
], ids=["cnn", "text"])
def test_built_in_cnn_and_text_models_are_adopted(tmp_path: Path, model: dict[str, Any]) -> None:
    from runtime.store.unit import new_model
    from runtime.training.adopt import adopt

    conf = _config(tmp_path, model)
    cfg = load_config(conf)
    data = _rows_file(tmp_path, 60)
    if model["kind"] == "text":  # token-id rows: every id below the vocabulary's size
        frame = pd.read_csv(data)
        frame[list(AGRAWAL_FEATURES)] = (frame[list(AGRAWAL_FEATURES)].abs() % 1000).round()
        frame.to_csv(data, index=False)
    trained = new_model(cfg, seed=11)  # "trained elsewhere": other weights than v1's seed
    path = tmp_path / "w.pt"
    torch.save(trained.state_dict(), path)
    cfg.state_dir.mkdir()
    db, events, registry = _open(cfg)
    db.create_all()
    assert adopt(cfg, db, events, registry, read_weights(path), data) == "v1"
    unit = load_unit(registry, cfg, "v1")
    key = next(iter(trained.state_dict()))
    assert torch.equal(unit.model.state_dict()[key], trained.state_dict()[key])
    db.dispose()


def test_bad_weights_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, conf = _rows_file(tmp_path), _config(tmp_path)
    other = tmp_path / "other.pt"
    torch.save(MLP(9, 2, [32], 0.0).state_dict(), other)
    pickled = tmp_path / "module.pt"
    torch.save(MLP(9, 2, [16], 0.0), pickled)
    good = tmp_path / "good.safetensors"
    save_file(MLP(9, 2, [16], 0.0).state_dict(), good)
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(good.read_bytes()[:300])
    cut_pt = tmp_path / "cut.pt"
    torch.save(MLP(9, 2, [16], 0.0).state_dict(), cut_pt)
    cut_pt.write_bytes(cut_pt.read_bytes()[:500])
    checkpoint = tmp_path / "ckpt.pt"
    torch.save({"model": MLP(9, 2, [16], 0.0).state_dict(), "epoch": 3}, checkpoint)
    text = tmp_path / "notes.txt"
    text.write_text("not weights")
    cases = {
        other: "'net.0.weight' has shape [32, 9] in the file, the model's is [16, 9]",
        pickled: "holds pickled Python objects, not only tensors",
        truncated: "is not a readable safetensors file (truncated?)",
        cut_pt: "is a truncated or damaged torch.save file",
        checkpoint: "give the model's state dict itself (e.g. checkpoint['model'])",
        text: "is neither a safetensors file nor a torch.save'd state dict",
        tmp_path / "missing.pt": "--weights: no such file",
    }
    for path, expected in cases.items():
        code, _, err = _cli(capsys, "adopt", "-c", str(conf), "--weights", str(path),
                            "--data", str(data))
        assert code != 0 and expected in err, (path.name, err)
        assert len(err.strip().splitlines()) == 1, err
    code, _, err = _cli(capsys, "adopt", "-c", str(conf), "--weights", str(good))
    assert code == 2 and "give --data LABELLED_ROWS" in err
    assert not (tmp_path / "state" / "models" / "v1").exists()


def test_check_state_names_missing_and_extra_keys() -> None:
    model = MLP(3, 2, [4], 0.0)
    state = model.state_dict()
    with pytest.raises(AdoptError, match=r"'mean' \[3\] is missing from the file"):
        check_state(model, {k: v for k, v in state.items() if k != "mean"})
    with pytest.raises(AdoptError, match=r"the file has 'extra' \[1\], which the model does not"):
        check_state(model, {**state, "extra": torch.zeros(1)})
