"""Staged bootstrap: stages in order, exit criteria, checkpoints, lineage, events."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from runtime.config import DriftloopConfig, ExitCriterion, parse_config
from runtime.daemon import Daemon
from runtime.intake.demo_stream import AGRAWAL_FEATURES, segment_rows
from runtime.review.text import event_summary
from runtime.store import events as ev
from runtime.store.db import Database
from runtime.store.events import EventLog
from runtime.store.versions import Registry
from runtime.training.bootstrap import BootstrapError
from runtime.training.stages import check_exit
from tests.conftest import SMALL


def _broad_csv(path: Path, n: int = 600, label_map: dict[int, int] | None = None) -> Path:
    """Rows from every age band: the 'broad' pretraining data."""
    from runtime.intake.settings import Segment

    rows = list(segment_rows(Segment(rows=n, function=1), seed=5, n=n, clean=True))
    df = pd.DataFrame([r[0] for r in rows], columns=list(AGRAWAL_FEATURES))
    labels = np.array([r[1] for r in rows])
    if label_map:
        labels = np.vectorize(label_map.get)(labels)
    df["class"] = labels
    df.to_csv(path, index=False)
    return path


def _cfg(tmp_path: Path, stages: list[dict[str, Any]]) -> DriftloopConfig:
    data = json.loads(json.dumps(SMALL))
    data["state_dir"] = str(tmp_path / "state")
    data["bootstrap"] = {"rows": 500, "epochs": 5}
    data["stages"] = stages
    return parse_config(data, origin="test")


def _events(cfg: DriftloopConfig) -> list[ev.Event]:
    db = Database.for_state_dir(cfg.state_dir, None)
    out = EventLog(db).list()
    db.dispose()
    return out


FAST = {"kind": "finetune", "lr": 0.005, "batch_size": 64}


def test_stages_run_in_order_and_v1_carries_the_lineage(tmp_path: Path) -> None:
    broad = _broad_csv(tmp_path / "broad.csv")
    cfg = _cfg(tmp_path, [
        {"name": "pretrain", "data": str(broad), "strategy": FAST, "budget": {"epochs": 5},
         "exit": [{"metric": "accuracy", "min": 0.6}]},
        {"name": "finetune", "strategy": {**FAST, "kind": "replay", "mix": 0.3,
                                          "adapt": {"layer_decay": 0.5}},
         "budget": {"epochs": 5}, "exit": [{"metric": "loss", "max": 5.0}]},
        {"name": "adapt", "strategy": {**FAST, "adapt": {"freeze": ["net.0.*"]}},
         "budget": {"epochs": 2}},
    ])
    lines: list[str] = []
    version = Daemon(cfg, report=lines.append).bootstrap()
    assert version == "v1"
    finished = [e for e in _events(cfg) if e.kind == ev.STAGE_FINISHED]
    assert [e.raw["stage"] for e in finished] == ["pretrain", "finetune", "adapt"]
    assert all(e.raw["passed"] and e.model_version == "v1" for e in finished)
    assert finished[0].raw["exit_criteria"] == {"accuracy": ">= 0.6"}
    summary = event_summary(finished[0])
    assert summary.startswith("stage pretrain passed: validation accuracy 0.")
    assert "None" not in summary
    assert sum("exit criteria" in line for line in lines) == 3
    db = Database.for_state_dir(cfg.state_dir, None)
    registry = Registry(db, cfg.state_dir / "models", EventLog(db))
    assert registry.champion() == "v1"
    meta = registry.get("v1").meta
    assert [s["stage"] for s in meta["stages"]] == ["pretrain", "finetune", "adapt"]
    for stage in meta["stages"]:
        blob = Path(stage["checkpoint"]).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == stage["sha256"]
        assert json.loads((Path(stage["checkpoint"]).parent / "stage.json").read_text())["passed"]
    # v1's buffer remembers the pretraining rows as well as the bootstrap rows
    loaded = registry.load("v1")
    assert len(loaded.tensors["buffer"]["y"]) == cfg.retrain.buffer.capacity
    db.dispose()


def test_a_stage_that_misses_its_exit_criteria_stops_with_one_line(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, [
        {"name": "first", "strategy": FAST, "budget": {"epochs": 1}},
        {"name": "hopeless", "strategy": FAST, "budget": {"epochs": 1},
         "exit": [{"metric": "accuracy", "min": 0.999}, {"metric": "loss", "max": 0.0001}]},
        {"name": "never", "strategy": FAST, "budget": {"epochs": 1}},
    ])
    with pytest.raises(BootstrapError) as info:
        Daemon(cfg).bootstrap()
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("stage 'hopeless' missed its exit criteria: accuracy ")
    assert "< 0.999" in msg and "> 0.0001" in msg
    finished = [e for e in _events(cfg) if e.kind == ev.STAGE_FINISHED]
    assert [(e.raw["stage"], e.raw["passed"]) for e in finished] == [
        ("first", True), ("hopeless", False)]
    failed = event_summary(finished[1])
    assert "FAILED" in failed and "(missed: accuracy " in failed
    db = Database.for_state_dir(cfg.state_dir, None)
    assert Registry(db, cfg.state_dir / "models", EventLog(db)).champion() is None
    db.dispose()


def test_a_retry_after_a_failed_stage_trains_on_the_bootstrap_data_and_leaves_the_stream(
    tmp_path: Path,
) -> None:
    stream = tmp_path / "stream"
    stream.mkdir()
    _broad_csv(stream / "part-001.csv", n=300)
    data = json.loads(json.dumps(SMALL))
    data["state_dir"] = str(tmp_path / "state")
    data["source"] = {"kind": "directory", "path": str(stream)}
    data["bootstrap"] = {"rows": 500, "data": str(_broad_csv(tmp_path / "task.csv", n=500))}
    stage = {"name": "only", "strategy": FAST, "budget": {"epochs": 1}}
    data["stages"] = [{**stage, "exit": [{"metric": "accuracy", "min": 0.999}]}]
    with pytest.raises(BootstrapError, match="missed its exit criteria"):
        Daemon(parse_config(data, origin="test")).bootstrap()
    data["stages"] = [stage]  # the config fixed: the retry must behave like a first run
    cfg = parse_config(data, origin="test")
    assert Daemon(cfg).bootstrap() == "v1"
    db = Database.for_state_dir(cfg.state_dir, None)
    meta = Registry(db, cfg.state_dir / "models", EventLog(db)).get("v1").meta
    assert (meta["data"]["first_row"], meta["data"]["last_row"]) == (1, 500)
    assert meta["data"]["source"] == f"bootstrap.data {tmp_path / 'task.csv'}"
    from runtime.store.rows import last_seq

    assert last_seq(db) == 500  # the stream file is left for the daemon
    db.dispose()
    Daemon(cfg).run(until_drained=True)
    stopped = _events(cfg)[-1]
    assert stopped.kind == ev.DAEMON_STOPPED and stopped.raw["rows_seen"] == 300


def test_a_retry_on_a_changed_bootstrap_file_is_refused_in_one_line(tmp_path: Path) -> None:
    data = json.loads(json.dumps(SMALL))
    data["state_dir"] = str(tmp_path / "state")
    task = _broad_csv(tmp_path / "task.csv", n=300)
    data["bootstrap"] = {"rows": 300, "data": str(task)}
    stage = {"name": "only", "strategy": FAST, "budget": {"epochs": 1}}
    data["stages"] = [{**stage, "exit": [{"metric": "accuracy", "min": 0.999}]}]
    with pytest.raises(BootstrapError, match="missed its exit criteria"):
        Daemon(parse_config(data, origin="test")).bootstrap()
    _broad_csv(task, n=320)  # the user "fixes" the data: the stored rows are the old ones
    data["stages"] = [stage]
    with pytest.raises(BootstrapError) as info:
        Daemon(parse_config(data, origin="test")).bootstrap()
    msg = str(info.value)
    assert "changed since its 300 rows were stored" in msg and "fresh state_dir" in msg, msg
    assert "\n" not in msg


def test_stage_data_with_unknown_labels_is_one_clear_error(tmp_path: Path) -> None:
    bad = _broad_csv(tmp_path / "bad.csv", n=50, label_map={0: 0, 1: 7})
    cfg = _cfg(tmp_path, [{"name": "pretrain", "data": str(bad), "strategy": FAST}])
    with pytest.raises(BootstrapError, match=r"row 3: unknown label '7' \(classes: \[0, 1\]\)"):
        Daemon(cfg).bootstrap()


def test_stage_config_is_validated() -> None:
    data = json.loads(json.dumps(SMALL))
    data["stages"] = [{"name": "a"}, {"name": "a"}]
    from runtime.config import ConfigError

    with pytest.raises(ConfigError, match="stage names must be distinct"):
        parse_config(data)
    data["stages"] = [{"name": "a", "exit": [{"metric": "accuracy"}]}]
    with pytest.raises(ConfigError, match="min or max"):
        parse_config(data)
    data["stages"] = [{"name": "a", "exit": [{"metric": "f1", "min": 0.5}]}]
    with pytest.raises(ConfigError, match="metric"):
        parse_config(data)
    data["stages"] = [{"name": "a", "exit": [{"metric": "accuracy", "min": 0.9, "max": 0.5}]}]
    with pytest.raises(ConfigError, match=r"'stages\[0\].exit\[0\]': min 0.9 is above max 0.5"):
        parse_config(data)


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ({"data": "nowhere.csv"}, "'stages[1].data' (stage 'late'): no such file "),
        ({"strategy": {**FAST, "adapt": {"freeze": ["nett.0.*"]}}},
         "'stages[1].strategy.adapt.freeze' (stage 'late'): 'nett.0.*' matches no parameter"),
        ({"strategy": {**FAST, "adapt": {"lora": {"target_modules": ["nosuch"]}}}},
         "'stages[1].strategy.adapt' (stage 'late'): lora: Target modules"),
    ],
    ids=["data", "freeze", "lora"],
)
def test_a_stage_that_cannot_run_fails_before_any_stage_trains(
    tmp_path: Path, stage: dict[str, Any], message: str
) -> None:
    cfg = _cfg(tmp_path, [
        {"name": "first", "strategy": FAST, "budget": {"epochs": 1}},
        {"name": "late", "budget": {"epochs": 1}, **stage},
    ])
    with pytest.raises(BootstrapError) as info:
        Daemon(cfg).bootstrap()
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
    assert not [e for e in _events(cfg) if e.kind == ev.STAGE_FINISHED]


def test_a_nan_metric_misses_every_criterion_on_it_in_plain_words() -> None:
    nan = float("nan")
    criteria = [ExitCriterion(metric="loss", max=0.5), ExitCriterion(metric="accuracy", min=0.5)]
    assert check_exit({"loss": nan, "accuracy": 0.9}, criteria) == ["loss is NaN"]
