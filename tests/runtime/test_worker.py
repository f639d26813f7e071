"""The warm retrain worker: a dying, failing or slow child never takes the daemon down."""

from __future__ import annotations

import time
from pathlib import Path

from runtime.config import DriftloopConfig
from runtime.worker import Outcome, RetrainRunner


def _wait(runner: RetrainRunner, limit: float = 240.0) -> Outcome:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        out = runner.poll()
        if out is not None:
            return out
        time.sleep(0.05)
    raise AssertionError("no outcome")


def test_one_worker_many_children(small_cfg: DriftloopConfig, tmp_path: Path) -> None:
    runner = RetrainRunner(tmp_path / "work", timeout_seconds=60)
    spec = {
        "config": small_cfg.model_dump(mode="json", by_alias=True),
        "trigger_id": "t1",
        "champion": "v1",
        "candidate": "v2",
        "onset": 0,
        "upto": 10,
    }
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
    spec = {
        "config": small_cfg.model_dump(mode="json", by_alias=True),
        "trigger_id": "t1",
        "champion": "v1",
        "candidate": "v2",
        "onset": 0,
        "upto": 10,
        "crash_for_test": True,
    }
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
    spec = {
        "config": small_cfg.model_dump(mode="json", by_alias=True),
        "trigger_id": "t1",
        "champion": "v1",
        "candidate": "v2",
        "onset": 0,
        "upto": 10,
        "sleep_for_test": 300,
    }
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
