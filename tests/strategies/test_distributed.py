"""The loop under DDP: 2 gloo processes launched by torch.distributed.run on this machine.

Tolerance: the 2-process run (per-process batch 32, effective batch 64, half the steps)
ends within 0.03 held-out accuracy of the 1-process run on the same data and epochs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from strategies.distributed import shard

ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 0.03


def _torchrun(out: Path, n: int, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={n}", "--max_restarts=0", "--monitor_interval=0.2",
           "-m", "tests.strategies.ddp_worker", str(out)]
    return subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT),
                                              "OMP_NUM_THREADS": "1", **(env or {})},
                          capture_output=True, text=True, timeout=300)


def test_shards_cover_every_row_once_per_epoch_and_move_with_it():
    a, b = shard(10, 3, 0, 0, 2), shard(10, 3, 0, 1, 2)
    assert sorted(a.tolist() + b.tolist()) == list(range(10))
    assert shard(10, 3, 1, 0, 2).tolist() != a.tolist()


@pytest.mark.slow
def test_two_gloo_processes_match_one_and_agree(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    subprocess.run([sys.executable, "-m", "tests.strategies.ddp_worker", str(one)], cwd=ROOT,
                   env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True, timeout=120)
    run = _torchrun(two, 2)
    assert run.returncode == 0, run.stderr[-2000:]
    r0, r1 = (json.loads((two / f"rank{r}.json").read_text()) for r in (0, 1))
    base = json.loads((one / "rank0.json").read_text())
    assert r0["digest"] == r1["digest"]  # DDP kept the replicas identical
    assert r0["world_size"] == 2 and r0["epochs"] == base["epochs"] == 6
    assert r0["steps"] == base["steps"] // 2 + (base["steps"] % 2)
    assert abs(r0["accuracy"] - base["accuracy"]) <= TOLERANCE, (r0, base)
    assert (two / "ckpt" / "checkpoint.json").exists()


@pytest.mark.slow
def test_a_killed_worker_fails_the_run_naming_its_rank_and_leaves_no_process(tmp_path):
    t0 = time.monotonic()
    run = _torchrun(tmp_path, 2, {"DIE_AT_EPOCH": "2"})
    assert run.returncode != 0
    assert "rank      : 1" in run.stderr or "rank: 1" in run.stderr, run.stderr[-2000:]
    assert time.monotonic() - t0 < 60
    left = subprocess.run(["pgrep", "-f", f"ddp_worker {tmp_path}"], capture_output=True)
    assert left.stdout.strip() == b""


@pytest.mark.slow
def test_ewc_lwf_der_and_ema_train_on_two_processes_as_on_one(tmp_path):
    """The penalties and averages that are more than a gradient step are computed the
    same on every rank (Fisher and DER's logits from the same buffer rows and start,
    LwF's teacher on each rank's own batch, EMA of identical replicas), so 2 processes
    of batch 16 end with identical replicas within the tolerance of 1 process of batch
    32: the same effective batch and steps (EWC at strength 100 is 0.08 below when the
    2 processes keep batch 32 and take half the steps)."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STRATEGIES": "1"}
    subprocess.run([sys.executable, "-m", "tests.strategies.ddp_worker", str(one)], cwd=ROOT,
                   env=env, check=True, timeout=300)
    run = _torchrun(two, 2, {"STRATEGIES": "1", "BATCH": "16"})
    assert run.returncode == 0, run.stderr[-2000:]
    for name in ("ewc", "lwf", "der", "ema"):
        r0, r1 = (json.loads((two / f"{name}-rank{r}.json").read_text()) for r in (0, 1))
        base = json.loads((one / f"{name}-rank0.json").read_text())
        assert r0["digest"] == r1["digest"] and r0["logits"] == r1["logits"], name
        assert r0["world_size"] == 2 and r0["steps"] == base["steps"], name
        assert abs(r0["accuracy"] - base["accuracy"]) <= TOLERANCE, (name, r0, base)
