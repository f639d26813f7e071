"""Shared fixtures: small configs for fast end-to-end runs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from runtime.config import DriftloopConfig, parse_config
from runtime.store.events import Event

torch.set_num_threads(1)

FEATURES = ["salary", "commission", "age", "elevel", "car", "zipcode", "hvalue", "hyears", "loan"]

SMALL: dict[str, Any] = {
    "state_dir": "state",
    "seed": 3,
    "schema": {"features": FEATURES, "label": "class", "classes": [0, 1]},
    "source": {
        "kind": "synthetic",
        "seed": 3,
        "batch_size": 200,
        "segments": [
            {"name": "young", "rows": 1800, "function": 1, "where": {"age": [20, 40]}},
            {"name": "old", "rows": 2200, "function": 1, "where": {"age": [60, 81]}},
        ],
    },
    "model": {"kind": "mlp", "hidden": [32, 32]},
    "bootstrap": {"rows": 1000, "epochs": 30},
    "detectors": [
        {"kind": "adwin", "signal": "error", "delta": 0.002},
        {"kind": "ks", "signal": "features", "reference_size": 600, "window_size": 300},
    ],
    # the gaps as written (the stories the tests assert); cadence: test_cadence.py
    "policy": {"warmup_rows": 200, "min_samples": 700, "cooldown_rows": 500,
               "cadence": {"enabled": False}},
    "retrain": {
        "strategy": {"kind": "replay", "lr": 0.003, "batch_size": 64},
        "buffer": {"kind": "reservoir", "capacity": 1000},
        "budget": {"epochs": 20, "seconds": 60},
        "timeout_seconds": 120,
    },
    "gate": {"min_gain": 0.02, "min_accuracy": 0.9, "max_forgetting": 0.03},
}


def small_config(tmp_path: Path, **overrides: Any) -> DriftloopConfig:
    data = copy.deepcopy(SMALL)
    data["state_dir"] = str(tmp_path / "state")
    for key, value in overrides.items():
        data[key] = value
    return parse_config(data, origin="test")


@pytest.fixture
def small_cfg(tmp_path: Path) -> DriftloopConfig:
    return small_config(tmp_path)


THREE_SEGMENTS = copy.deepcopy(SMALL["source"])
THREE_SEGMENTS["segments"] = [
    *SMALL["source"]["segments"],
    {
        "name": "old, bad labels",
        "rows": 1400,
        "function": 1,
        "where": {"age": [60, 81]},
        "label_noise": 0.4,
    },
]


@pytest.fixture(scope="session")
def burst(tmp_path_factory: pytest.TempPathFactory) -> tuple[DriftloopConfig, list[Event]]:
    """One daemon burst over a three-segment stream (shared, read-only: copy it to change it).

    Segment 2 brings customers the champion never saw (retrain, promote v2); segment 3
    has 40% of its labels flipped (retrain, the gate refuses v3).
    """
    from runtime.daemon import Daemon
    from runtime.store.db import Database
    from runtime.store.events import EventLog

    cfg = small_config(
        tmp_path_factory.mktemp("e2e"),
        source=THREE_SEGMENTS,
        reports={"drift_html": True},  # off by default; the event-sequence test reads them
    )
    Daemon(cfg).run(until_drained=True)
    db = Database.for_state_dir(cfg.state_dir, None)
    events = EventLog(db).list()
    db.dispose()
    return cfg, events
