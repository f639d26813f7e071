"""bench/continual.py's tuning rules: what is chosen, and what the other strategies take."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def continual() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "continual_bench", ROOT / "bench" / "continual.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["continual_bench"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _tried(kind: str, acc: float, samples: int) -> dict[str, Any]:
    return {"config": {"kind": kind}, "avg_accuracy": acc, "samples_processed": samples}


def test_joint_is_the_cheapest_near_the_best_and_replay_the_best_within_a_quarter(
    continual: ModuleType,
) -> None:
    tried = {
        "j slow best": _tried("joint", 0.975, 50_000),
        "j cheap near": _tried("joint", 0.972, 40_000),
        "j cheapest far": _tried("joint", 0.950, 30_000),
        "r cheap": _tried("replay", 0.930, 8_000),
        "r good": _tried("replay", 0.945, 9_900),
        "r over budget": _tried("replay", 0.960, 10_100),
    }
    assert continual.choose(tried) == {"joint": "j cheap near", "replay": "r good"}
    # nothing within a quarter of joint's compute: the most accurate replay
    tried = {k: v for k, v in tried.items() if k in ("j cheap near", "r over budget")}
    assert continual.choose(tried)["replay"] == "r over budget"


def test_tuned_settings_give_every_warm_strategy_replays_budget(continual: ModuleType) -> None:
    bench = continual.BENCHMARKS["digits_class_incremental"](False, 1)
    grid = continual.tuning_grid(bench)
    replay = next(v for v in grid.values() if v["kind"] == "replay" and v["loss"] == "balanced")
    joint = next(v for v in grid.values() if v["kind"] == "joint")
    plan = continual.strategies(bench, {"joint": joint, "replay": replay})
    assert plan["replay"] == replay and plan["joint"] == joint
    for label in ("finetune", "der", "lwf", "ewc", "ewc+replay"):
        for key in ("lr", "batch_size", "patience", "epochs", "validate"):
            assert plan[label][key] == replay[key], (label, key)
        assert "loss" not in plan[label]
