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


def test_joint_is_the_cheapest_near_the_best_and_replay_the_best_within_the_cap(
    continual: ModuleType,
) -> None:
    assert continual.REPLAY_CAP == 0.20  # the target's quarter less a margin
    tried = {
        "j slow best": _tried("joint", 0.975, 50_000),
        "j cheap near": _tried("joint", 0.972, 40_000),
        "j cheapest far": _tried("joint", 0.950, 30_000),
        "r cheap": _tried("replay", 0.930, 7_000),
        "r good": _tried("replay", 0.945, 8_000),
        "r past the margin": _tried("replay", 0.960, 9_900),
    }
    assert continual.choose(tried) == {"joint": "j cheap near", "replay": "r good"}
    # nothing within the cap of joint's compute: the most accurate replay
    tried = {k: v for k, v in tried.items() if k in ("j cheap near", "r past the margin")}
    assert continual.choose(tried)["replay"] == "r past the margin"
    # joints alone (the first phase of the tuning): joint only
    assert continual.choose({"j": _tried("joint", 0.9, 1)}) == {"joint": "j"}


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
        assert "loss" not in plan[label] and "adapt" not in plan[label]
    averaged = {**replay, "adapt": {"ema_decay": 0.98}}
    plan = continual.strategies(bench, {"joint": joint, "replay": averaged})
    for label in ("replay", "finetune", "der", "lwf", "ewc", "ewc+replay"):
        assert plan[label]["adapt"] == {"ema_decay": 0.98}, label
    assert "adapt" not in plan["joint"]


def test_the_averaging_step_keeps_the_most_accurate(
    continual: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """replay's choice with no averaging and each decay of AVERAGING, on the tuning seeds,
    from the chosen joint's bootstrap; the most accurate replaces replay (first of equals:
    no averaging), and the record keeps what was tried."""
    assert continual.AVERAGING == (None, 0.95, 0.98)
    accuracy = {None: 0.90, 0.95: 0.93, 0.98: 0.92}
    calls = []

    def fake_run(bench: Any, plan: dict[str, Any], seeds: list[int], verbose: bool,
                 scratch: Any) -> dict[str, Any]:
        calls.append((seeds, scratch))
        rows = {}
        for label, cfg in plan.items():
            decay = cfg.get("adapt", {}).get("ema_decay")
            rows[label] = {"config": cfg, "avg_accuracy": accuracy[decay], "avg_accuracy_sd": 0,
                           "forgetting": 0, "samples_processed": 100}
        return {"strategies": rows}

    monkeypatch.setattr(continual, "run_benchmark", fake_run)
    replay = {"kind": "replay", "lr": 1e-3, "batch_size": 8, "epochs": 3}
    entry = {"joint": {"kind": "joint"}, "replay": replay, "size": "full"}
    out = continual.tune_averaging(None, entry)
    assert calls == [(continual.TUNE_SEEDS, {"kind": "joint"})]
    assert out["replay"] == {**replay, "adapt": {"ema_decay": 0.95}}
    assert out["averaging"]["chosen"] == "ema_decay 0.95"
    assert set(out["averaging"]["tried"]) == {"no averaging", "ema_decay 0.95", "ema_decay 0.98"}
    assert entry["replay"] == replay  # the input entry is left as it was
    accuracy.update({0.95: 0.90, 0.98: 0.90})
    assert continual.tune_averaging(None, entry)["replay"] == replay


def test_the_bootstrap_takes_the_tuned_from_scratch_recipe(continual: ModuleType) -> None:
    bench = continual.BENCHMARKS["digits_class_incremental"](False, 1)
    joint = {"kind": "joint", "lr": 4e-3, "batch_size": 16, "patience": 3}
    assert continual.scratch_recipe(bench, joint) == {"lr": 4e-3, "batch_size": 16, "patience": 3}
    # records from before the recipe was tuned: batch 64 at the benchmark's learning rate
    assert continual.scratch_recipe(bench, None) == {
        "lr": bench.lr,
        "batch_size": 64,
        "patience": bench.budgets.scratch_patience,
    }
    _, samples, epochs = continual.bootstrap(bench, 0, joint)
    first = bench.experiences[0]
    # batch 16 with patience 3: every epoch sees the training rows and the validation rows
    assert samples == epochs * (len(first.train[1]) + len(first.val[1]))
    assert epochs >= 4  # patience 3 after at least one best epoch


def test_quick_mode_reads_the_quick_entry_where_there_is_one(continual: ModuleType) -> None:
    record = {
        "benchmarks": {"a": {"n": "a full"}, "b": {"n": "b full"}},
        "quick": {"a": {"n": "a q"}},
    }
    assert continual.settings_for(record, "a", quick=True) == {"n": "a q"}
    assert continual.settings_for(record, "a", quick=False) == {"n": "a full"}
    assert continual.settings_for(record, "b", quick=True) == {"n": "b full"}
    assert continual.settings_for(record, "c", quick=False) is None
    # a record written before quick entries existed
    assert continual.settings_for({"benchmarks": {"a": {"n": 1}}}, "a", quick=True) == {"n": 1}
