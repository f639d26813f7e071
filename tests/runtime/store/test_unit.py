"""A saved unit's rehearsal buffer, loaded under the config as it is now."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from runtime.config import DriftloopConfig, parse_config
from runtime.store.db import Database
from runtime.store.events import EventLog
from runtime.store.unit import calibration_of, load_unit, new_buffer, new_model, save_unit
from runtime.store.versions import IntegrityError, Registry
from strategies.calibration import fit
from tests.conftest import SMALL, small_config


def _saved(tmp_path: Path) -> tuple[DriftloopConfig, Registry, torch.Tensor, torch.Tensor]:
    """v1 saved with a reservoir buffer holding 300 rows of two classes."""
    cfg = small_config(tmp_path)
    cfg.state_dir.mkdir(parents=True)
    db = Database.for_state_dir(cfg.state_dir, None)
    db.create_all()
    registry = Registry(db, cfg.state_dir / "models", EventLog(db))
    gen = torch.Generator().manual_seed(0)
    nf = len(cfg.schema.features)
    x, y = torch.randn(300, nf, generator=gen), torch.randint(0, 2, (300,), generator=gen)
    buffer = new_buffer(cfg)
    buffer.add(x, y)
    save_unit(
        registry,
        "v1",
        model=new_model(cfg, seed=0),
        buffer=buffer,
        reference=np.zeros((1, nf)),
        golden=(np.zeros((2, nf)), np.array([0, 1])),
        meta={},
        parent=None,
    )
    return cfg, registry, x, y


def _reconfigured(tmp_path: Path, **buffer: object) -> DriftloopConfig:
    data = copy.deepcopy(SMALL)
    data["state_dir"] = str(tmp_path / "state")
    data["retrain"]["buffer"] = buffer
    return parse_config(data, origin="test")


def test_the_same_kind_restores_the_saved_buffer_exactly(tmp_path: Path) -> None:
    cfg, registry, _, y = _saved(tmp_path)
    unit = load_unit(registry, cfg, "v1", with_buffer=True)
    assert unit.buffer is not None
    _, by = unit.buffer.tensors()
    assert len(by) == 300 and unit.buffer.state_meta()["kind"] == "reservoir"
    assert torch.equal(torch.sort(by).values, torch.sort(y).values)


def test_a_changed_buffer_kind_resamples_the_saved_rows_instead_of_failing(
    tmp_path: Path,
) -> None:
    _, registry, x, _ = _saved(tmp_path)
    cfg = _reconfigured(tmp_path, kind="class_balanced", capacity=100)
    unit = load_unit(registry, cfg, "v1", with_buffer=True)
    assert unit.buffer is not None
    assert unit.buffer.state_meta()["kind"] == "class_balanced"
    bx, by = unit.buffer.tensors()
    assert len(by) == 100
    assert sorted(torch.bincount(by).tolist()) == [50, 50]  # balanced over the two classes
    # every kept row is one of the saved rows, unchanged
    saved = {tuple(r.tolist()) for r in x}
    assert all(tuple(r.tolist()) in saved for r in bx)
    # and it saves and loads again under the new kind
    save_unit(
        registry,
        "v2",
        model=unit.model,
        buffer=unit.buffer,
        reference=np.zeros((1, len(cfg.schema.features))),
        golden=(np.zeros((2, len(cfg.schema.features))), np.array([0, 1])),
        meta={},
        parent="v1",
    )
    again = load_unit(registry, cfg, "v2", with_buffer=True)
    assert again.buffer is not None and torch.equal(again.buffer.tensors()[1], by)


def test_a_unit_is_saved_calibrated_and_an_older_one_reads_uncalibrated(
    tmp_path: Path,
) -> None:
    cfg, registry, _, _ = _saved(tmp_path)
    meta = registry.get("v1").meta
    assert meta["calibration"]["method"] == "none"  # two golden rows: too few to fit
    unit = load_unit(registry, cfg, "v1")
    assert unit.calibration.identity
    old = {k: v for k, v in meta.items() if k != "calibration"}
    assert calibration_of("v1", old).temperature == 1.0  # saved before calibrations


def test_a_tampered_calibration_fails_like_a_tampered_file(tmp_path: Path) -> None:
    _, _, _, _ = _saved(tmp_path)
    cal = fit(np.random.default_rng(0).normal(size=(50, 2)) * 4, np.arange(50) % 2)
    data = {**cal.to_json(), "temperature": 0.5}
    with pytest.raises(IntegrityError, match="calibration"):
        calibration_of("v1", {"calibration": data})
