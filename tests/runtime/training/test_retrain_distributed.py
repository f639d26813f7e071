"""A retrain on 2 gloo processes, as the daemon runs it: same verdicts, a killed worker
fails it naming the rank, a shutdown leaves no process, a checkpoint resumes across N.

Tolerance: a candidate trained by 2 processes (per-process batch 64, effective batch
128, half the steps, the same learning rate) scores within 0.03 held-out accuracy of the
one trained by 1 process on the same rows and epochs.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from runtime.config import DriftloopConfig
from runtime.store import events as ev
from runtime.store.db import Database
from runtime.store.events import EventLog
from runtime.store.versions import Registry
from runtime.training.worker import RetrainRunner
from tests.conftest import SMALL, THREE_SEGMENTS, small_config
from tests.runtime.training.test_worker import _spec, _state_with_champion, _wait

TOLERANCE = 0.03
DDP = {"nproc_per_node": 2, "backend": "gloo", "timeout_seconds": 30}
pytestmark = pytest.mark.slow


def _retrain(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(SMALL["retrain"]), **changes}


def _left(pattern: str) -> list[str]:
    out = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if "pgrep" not in line]


def _gone(pattern: str, within: float) -> list[str]:
    end = time.monotonic() + within
    while (left := _left(pattern)) and time.monotonic() < end:
        time.sleep(0.1)
    return left


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A state directory holding v1 and rows past it (copy it to use it)."""
    root = tmp_path_factory.mktemp("ddp")
    upto = _state_with_champion(small_config(root))
    return root, upto


def _copy(champion: tuple[Path, int], to: Path, **retrain: Any) -> DriftloopConfig:
    shutil.copytree(champion[0], to)
    return small_config(to, retrain=_retrain(**retrain))


def _until_training(runner: RetrainRunner, job_dir: Path, limit: float = 240) -> None:
    end = time.monotonic() + limit
    while not (job_dir / "progress.jsonl").exists():
        assert runner.poll() is None and time.monotonic() < end
        time.sleep(0.05)


def test_a_killed_worker_fails_the_retrain_naming_its_rank_within_seconds(
    champion: tuple[Path, int], tmp_path: Path
) -> None:
    cfg = _copy(champion, tmp_path / "s", distributed=DDP,
                budget={"epochs": 2000, "seconds": 200})
    work = tmp_path / "work"
    runner = RetrainRunner(work, timeout_seconds=300)
    try:
        runner.start("t1", _spec(cfg, 1000, champion[1]))
        _until_training(runner, work / "t1.ddp")
        os.kill(int((work / "t1.ddp" / "rank1.pid").read_text()), signal.SIGKILL)
        t0 = time.monotonic()
        out = _wait(runner, 60)
        took = time.monotonic() - t0
    finally:
        runner.close()
    assert not out.ok and "distributed worker rank 1 killed by signal SIGKILL" in out.reason
    assert took < 10, f"{took:.1f} s from the kill to the failure"
    assert _gone(str(work), 5) == []


def test_within_max_restarts_the_agent_restarts_the_workers_from_the_last_epoch(
    champion: tuple[Path, int], tmp_path: Path
) -> None:
    cfg = _copy(champion, tmp_path / "s", distributed={**DDP, "max_restarts": 1},
                budget={"epochs": 60, "seconds": None})
    work = tmp_path / "work"
    runner = RetrainRunner(work, timeout_seconds=600)
    try:
        runner.start("t1", _spec(cfg, 1000, champion[1], config_hash=cfg.config_hash()))
        progress, end = work / "t1.ddp" / "progress.jsonl", time.monotonic() + 240
        while not (progress.exists() and len(progress.read_text().splitlines()) >= 3):
            assert runner.poll() is None and time.monotonic() < end
            time.sleep(0.05)
        os.kill(int((work / "t1.ddp" / "rank1.pid").read_text()), signal.SIGKILL)
        out = _wait(runner, 500)
    finally:
        runner.close()
    assert out.ok, out.reason
    assert out.result["train"]["resumed_from_epoch"] >= 2
    assert out.result["train"]["epochs"] == 60


def test_a_daemon_shutdown_mid_epoch_stops_every_worker(
    champion: tuple[Path, int], tmp_path: Path
) -> None:
    cfg = _copy(champion, tmp_path / "s", distributed=DDP,
                budget={"epochs": 2000, "seconds": 200})
    work = tmp_path / "work"
    runner = RetrainRunner(work, timeout_seconds=300)
    try:
        runner.start("t1", _spec(cfg, 1000, champion[1]))
        _until_training(runner, work / "t1.ddp")
        workers = [p for p in _left(f"ddp_worker {work}") if "distributed.run" not in p]
        assert len(workers) == 2
    finally:
        runner.close()  # what the daemon's SIGTERM handler does
    assert _gone(str(work), 5) == []


def test_a_checkpoint_of_one_process_resumes_on_two(
    champion: tuple[Path, int], tmp_path: Path
) -> None:
    budget = {"epochs": 6, "seconds": None}
    one = _copy(champion, tmp_path / "one", budget=budget)
    two = small_config(tmp_path / "one", retrain=_retrain(budget=budget, distributed=DDP))
    work = tmp_path / "work"
    checkpoint = work / "t1.checkpoint" / "checkpoint.json"
    runner = RetrainRunner(work, timeout_seconds=300)
    try:
        runner.start("t1", _spec(one, 1000, champion[1], pause_after_epoch_for_test=2,
                                 config_hash=one.config_hash()))  # as the daemon does
        end = time.monotonic() + 240
        while not (checkpoint.exists()
                   and json.loads(checkpoint.read_text())["loop"]["epochs"] == 2):
            assert runner.poll() is None and time.monotonic() < end
            time.sleep(0.05)
        runner.cancel()
        runner.start("t1", _spec(two, 1000, champion[1], config_hash=two.config_hash()))
        out = _wait(runner, 300)
    finally:
        runner.close()
    assert out.ok, out.reason
    train = out.result["train"]
    assert train["resumed_from_epoch"] == 2 and train["epochs"] == 6
    assert train["world_size"] == 2 and train["backend"] == "gloo"


def _candidates(cfg: DriftloopConfig) -> tuple[list[ev.Event], dict[str, float]]:
    db = Database.for_state_dir(cfg.state_dir, None)
    events = EventLog(db).list()
    registry = Registry(db, cfg.state_dir / "models", events=EventLog(db))
    accs = {e.model_version: registry.get(e.model_version).meta["metrics"]["holdout"][1]
            for e in events if e.kind == ev.RETRAIN_FINISHED and e.model_version}
    db.dispose()
    return events, accs


def test_the_daemon_on_two_processes_decides_as_on_one(
    burst: tuple[DriftloopConfig, list[ev.Event]], tmp_path: Path
) -> None:
    from runtime.daemon import Daemon

    cfg = small_config(tmp_path, source=THREE_SEGMENTS, retrain=_retrain(distributed=DDP))
    Daemon(cfg).run(until_drained=True)
    events, accs = _candidates(cfg)
    base_events, base_accs = _candidates(burst[0])
    verdicts = {ev.GATE_PASSED, ev.GATE_FAILED, ev.MODEL_PROMOTED, ev.RETRAIN_FAILED}
    assert [(e.kind, e.model_version) for e in events if e.kind in verdicts] == \
        [(e.kind, e.model_version) for e in base_events if e.kind in verdicts]
    ran = [e for e in events if e.kind in (ev.RETRAIN_STARTED, ev.RETRAIN_FINISHED)]
    assert ran and all(e.payload.world_size == 2 and e.payload.backend == "gloo" for e in ran)
    assert accs.keys() == base_accs.keys()
    for version, acc in accs.items():
        assert abs(acc - base_accs[version]) <= TOLERANCE, (version, acc, base_accs[version])


def test_one_process_is_todays_retrain_bit_for_bit(
    champion: tuple[Path, int], tmp_path: Path
) -> None:
    import torch

    from tests.runtime.training.test_worker import _candidate_weights

    plain = _copy(champion, tmp_path / "plain")
    one = _copy(champion, tmp_path / "one", distributed={"nproc_per_node": 1})
    runner = RetrainRunner(tmp_path / "work", timeout_seconds=300)
    try:
        runner.start("t1", _spec(plain, 1000, champion[1]))
        a = _wait(runner, 300)
        runner.start("t1", _spec(one, 1000, champion[1]))
        b = _wait(runner, 300)
    finally:
        runner.close()
    assert a.ok and b.ok, (a.reason, b.reason)
    assert "world_size" not in b.result["train"] and a.result["metrics"] == b.result["metrics"]
    wa, wb = _candidate_weights(plain), _candidate_weights(one)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
