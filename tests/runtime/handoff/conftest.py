"""A registry holding a champion of the configured model, for the handoff tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runtime.config import DriftloopConfig, parse_config
from runtime.store.db import Database
from runtime.store.events import EventLog
from runtime.store.unit import new_buffer, new_model, save_unit
from runtime.store.versions import Registry

Make = Callable[..., tuple[DriftloopConfig, Registry]]


def config(tmp: Path, model: dict[str, Any] | None = None, n_features: int = 4,
           **extra: Any) -> DriftloopConfig:
    (tmp / "inbox").mkdir(exist_ok=True)
    return parse_config({
        "state_dir": str(tmp / "state"),
        "schema": {"features": [f"f{i}" for i in range(n_features)], "classes": [0, 1, 2]},
        "source": {"kind": "directory", "path": str(tmp / "inbox")},
        "model": model or {"kind": "mlp", "hidden": [8]},
        "detectors": [{"kind": "adwin", "signal": "error"}],
        **extra,
    }, origin="test")


@pytest.fixture
def make_registry(tmp_path: Path) -> Iterator[Make]:
    """``make(model=..., n_features=..., versions=N)``: a config and a registry whose
    versions v1..vN were promoted in turn (each with a golden set of 40 rows)."""
    opened: list[Database] = []

    def make(model: dict[str, Any] | None = None, n_features: int = 4, versions: int = 1,
             rows: Callable[[np.random.Generator, int], np.ndarray] | None = None,
             **extra: Any) -> tuple[DriftloopConfig, Registry]:
        cfg = config(tmp_path, model, n_features, **extra)
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        db = Database.for_state_dir(cfg.state_dir, None)
        db.create_all()
        opened.append(db)
        events = EventLog(db)
        registry = Registry(db, cfg.state_dir / "models", events)
        rng = np.random.default_rng(0)
        draw = rows or (lambda g, n: g.normal(size=(n, n_features)))
        for i in range(1, versions + 1):
            x = draw(rng, 40)
            y = rng.integers(0, 3, size=40)
            save_unit(registry, f"v{i}", model=new_model(cfg, seed=i), buffer=new_buffer(cfg),
                      reference=x, golden=(x, y), meta={"golden_index": [f"v{i}"]},
                      parent=None if i == 1 else f"v{i - 1}")
            registry.promote(f"v{i}", {"reason": "test"})
        return cfg, registry

    yield make
    for db in opened:
        db.dispose()
