"""The warm retrain worker: a dying, failing or slow child never takes the daemon down."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from runtime.config import DriftloopConfig
from runtime.training.worker import Outcome, RetrainRunner


def _wait(runner: RetrainRunner, limit: float = 240.0) -> Outcome:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        out = runner.poll()
        if out is not None:
            return out
        time.sleep(0.05)
    raise AssertionError("no outcome")


def _spec(cfg: DriftloopConfig, onset: int = 0, upto: int = 10, **extra: Any) -> dict[str, Any]:
    """A retrain job for trigger ``t1``: champion v1 → candidate v2 on rows onset..upto."""
    return {
        "config": cfg.model_dump(mode="json", by_alias=True),
        "trigger_id": "t1",
        "champion": "v1",
        "candidate": "v2",
        "onset": onset,
        "upto": upto,
        **extra,
    }


def test_one_worker_many_children(small_cfg: DriftloopConfig, tmp_path: Path) -> None:
    runner = RetrainRunner(tmp_path / "work", timeout_seconds=60)
    spec = _spec(small_cfg)
    try:
        runner.start("t1", {**spec, "crash_for_test": True})
        out = _wait(runner)
        assert not out.ok and out.reason == "child process killed by signal SIGKILL"
        worker = runner._worker
        runner.start("t2", {**spec, "trigger_id": "t2"})  # no state at all: an exception
        out = _wait(runner)
        assert not out.ok and out.reason.startswith(
            ("OperationalError", "KeyError", "IntegrityError")
        )
        assert runner._worker is worker  # the same warm worker served both
        assert (tmp_path / "work" / "t2.log").exists()
    finally:
        runner.close()
    assert runner._worker is None


def test_a_dead_worker_fails_the_job_and_the_next_one_gets_a_new_worker(
    small_cfg: DriftloopConfig, tmp_path: Path
) -> None:
    runner = RetrainRunner(tmp_path / "work", timeout_seconds=60)
    spec = _spec(small_cfg, crash_for_test=True)
    try:
        runner.start("t1", spec)
        assert runner._worker is not None
        runner._worker.kill()  # while it is still importing, before it forks the job
        out = _wait(runner)
        assert not out.ok and "worker process died" in out.reason
        runner.start("t2", spec)
        assert "SIGKILL" in _wait(runner).reason
    finally:
        runner.close()


def test_no_retrain_outlives_its_daemon(small_cfg: DriftloopConfig, tmp_path: Path) -> None:
    import os

    runner = RetrainRunner(tmp_path / "work", timeout_seconds=600)
    spec = _spec(small_cfg, sleep_for_test=300)
    try:
        runner.start("t1", spec)
        end = time.monotonic() + 240
        while runner._child is None and time.monotonic() < end:
            assert runner.poll() is None
            time.sleep(0.05)
        child, worker = runner._child, runner._worker
        assert child is not None and worker is not None and worker.stdin is not None
        os.kill(child, 0)  # alive, sleeping
        worker.stdin.close()  # what the kernel does when the daemon is killed with -9
        worker.wait(timeout=30)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the retrain child outlived its worker")
    finally:
        runner.close()


def _state_with_champion(cfg: DriftloopConfig) -> int:
    """Run the daemon until it has bootstrapped v1 and stored some rows past it (before
    any drift); returns the last row's seq."""
    from runtime.daemon import Daemon
    from runtime.store.db import Database
    from runtime.store.rows import last_seq

    d = Daemon(cfg)
    d.open()
    try:
        while d.rows_seen < 1600:
            d.step()
        assert not d.runner.running
    finally:
        d.close("test")
    return last_seq(Database.for_state_dir(cfg.state_dir, None))


def _candidate_weights(cfg: DriftloopConfig) -> dict[str, Any]:
    from runtime.store.db import Database
    from runtime.store.events import EventLog
    from runtime.store.unit import load_unit
    from runtime.store.versions import Registry

    db = Database.for_state_dir(cfg.state_dir, None)
    registry = Registry(db, cfg.state_dir / "models", EventLog(db))
    return load_unit(registry, cfg, "v2").model.state_dict()


def test_an_interrupted_retrain_resumes_from_its_last_epoch_checkpoint(tmp_path: Path) -> None:
    import json
    import shutil

    import torch

    from tests.conftest import SMALL, small_config

    retrain = {**SMALL["retrain"], "budget": {"epochs": 6, "seconds": None}}
    cfg = small_config(tmp_path / "a", retrain=retrain)
    upto = _state_with_champion(cfg)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    ref_cfg = small_config(tmp_path / "b", retrain=retrain)

    runner = RetrainRunner(tmp_path / "work", timeout_seconds=120)
    checkpoint = tmp_path / "work" / "t1.checkpoint" / "checkpoint.json"
    try:
        runner.start("t1", _spec(ref_cfg, 1000, upto))  # uninterrupted, on a copy of the same state
        reference = _wait(runner)
        assert reference.ok, reference.reason
        assert reference.result["train"]["resumed_from_epoch"] == 0
        assert not checkpoint.parent.exists()  # a finished job leaves no checkpoint

        runner.start("t1", _spec(cfg, 1000, upto, pause_after_epoch_for_test=2))
        end = time.monotonic() + 240
        while not (
            checkpoint.exists() and json.loads(checkpoint.read_text())["loop"]["epochs"] == 2
        ):
            assert runner.poll() is None and time.monotonic() < end
            time.sleep(0.05)
        runner.cancel()  # what a daemon shutdown does; the daemon re-runs it once
        assert checkpoint.exists()

        runner.start("t1", _spec(cfg, 1000, upto))
        resumed = _wait(runner)
    finally:
        runner.close()
    assert resumed.ok, resumed.reason
    assert resumed.result["train"]["resumed_from_epoch"] == 2
    assert resumed.result["train"]["epochs"] == reference.result["train"]["epochs"] == 6
    assert resumed.result["metrics"] == reference.result["metrics"]
    a, b = _candidate_weights(cfg), _candidate_weights(ref_cfg)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not checkpoint.parent.exists()


def test_only_the_same_job_on_the_same_data_resumes_a_checkpoint(tmp_path: Path) -> None:
    import torch

    from runtime.training.retrain_job import checkpoint_dir

    spec = {
        "checkpoint_dir": str(tmp_path / "t1.checkpoint"),
        "trigger_id": "t1",
        "champion": "v1",
        "onset": 10,
        "upto": 90,
        "config_hash": "abc",
    }
    x, y = torch.arange(12.0).reshape(6, 2), torch.tensor([0, 1, 0, 1, 0, 1])
    path = checkpoint_dir(spec, x, y)
    assert path is not None
    (path / "checkpoint.json").write_text("{}")
    assert checkpoint_dir(spec, x, y) == path and (path / "checkpoint.json").exists()
    y2 = y.clone()
    y2[0] = 1  # a label arrived in between: other training data
    assert checkpoint_dir(spec, x, y2) == path and not (path / "checkpoint.json").exists()
    (path / "checkpoint.json").write_text("{}")
    assert checkpoint_dir({**spec, "champion": "v2"}, x, y2) == path
    assert not (path / "checkpoint.json").exists()
    assert checkpoint_dir({}, x, y) is None


def test_an_idle_worker_leaves_at_once_when_its_daemon_goes(tmp_path: Path) -> None:
    """Its stdin closing (the daemon stopped, or was killed) ends a ready worker within
    a second: a normal interpreter exit tore torch down for 3-4 s first (issue 17's
    leftover worker after a kill -9 in the gate phase)."""
    runner = RetrainRunner(tmp_path / "work", timeout_seconds=60)
    try:
        runner.warm()
        end = time.monotonic() + 240
        while not runner._ready and time.monotonic() < end:
            runner._read()
            time.sleep(0.05)
        worker = runner._worker
        assert runner._ready and worker is not None and worker.stdin is not None
        t0 = time.monotonic()
        worker.stdin.close()
        worker.wait(timeout=30)
        assert time.monotonic() - t0 <= 1.0, f"left after {time.monotonic() - t0:.2f} s"
    finally:
        runner.close()
