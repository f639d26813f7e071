"""``retrain.distributed``: the settings, the launcher's command line, how a failure reads."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from runtime.config import ConfigError
from runtime.training.distributed_job import command, failure
from runtime.training.settings import DistributedConfig
from tests.conftest import SMALL, small_config

TORCHRUN_LOG = """\
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
runtime.training.ddp_worker FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2026-12-03_10:00:01
  rank      : 0 (local_rank: 0)
  exitcode  : 1 (pid: 11)
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-03_10:00:00
  host      : vm
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 12)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 12
============================================================
"""


def _retrain(**changes: Any) -> dict[str, Any]:
    retrain = copy.deepcopy(SMALL["retrain"])
    retrain.update(changes)
    return retrain


def test_two_processes_load_and_one_is_the_single_process_retrain(tmp_path: Path) -> None:
    cfg = small_config(tmp_path, retrain=_retrain(distributed={"nproc_per_node": 2}))
    d = cfg.retrain.distributed
    assert d is not None and d.active and d.backend_for("cpu") == "gloo"
    assert d.backend_for("cuda:0") == "nccl"
    assert not DistributedConfig(nproc_per_node=1).active


@pytest.mark.parametrize(
    ("strategy", "distributed", "device", "says"),
    [
        ({"adapt": {"unfreeze_every": 2}}, {}, "auto", "unfreeze_every changes the trainable"),
        ({"adapt": {"lora": {"r": 4}}}, {}, "auto", "lora (peft) is not shown correct"),
        ({}, {"backend": "nccl"}, "cpu", "backend nccl needs retrain.device cuda"),
        ({}, {"nnodes": 2}, "auto", "nnodes 2 needs rdzv_endpoint"),
        ({}, {"nproc_per_node": 0}, "auto", "nproc_per_node"),
    ],
)
def test_what_ddp_cannot_train_is_refused_at_load_in_one_line(
    tmp_path: Path, strategy: dict[str, Any], distributed: dict[str, Any], device: str, says: str
) -> None:
    retrain = _retrain(strategy={**SMALL["retrain"]["strategy"], **strategy},
                       distributed={"nproc_per_node": 2, **distributed}, device=device)
    with pytest.raises(ConfigError, match=re.escape(says)) as info:
        small_config(tmp_path, retrain=retrain)
    assert "\n" not in str(info.value)


def test_the_same_strategy_on_one_process_is_not_refused(tmp_path: Path) -> None:
    strategy = {**SMALL["retrain"]["strategy"], "adapt": {"unfreeze_every": 2}}
    small_config(tmp_path, retrain=_retrain(strategy=strategy,
                                            distributed={"nproc_per_node": 1}))


def test_standalone_on_one_host_and_the_rendezvous_passed_through(tmp_path: Path) -> None:
    one = command(DistributedConfig(nproc_per_node=2, max_restarts=1), tmp_path)
    assert "--standalone" in one and "--nproc_per_node=2" in one and "--max_restarts=1" in one
    assert one[-3:] == ["-m", "runtime.training.ddp_worker", str(tmp_path)]
    many = command(DistributedConfig(nproc_per_node=4, nnodes=2, rdzv_backend="c10d",
                                     rdzv_endpoint="head:29400"), tmp_path)
    assert "--standalone" not in many
    assert {"--nnodes=2", "--rdzv_endpoint=head:29400", "--rdzv_backend=c10d"} <= set(many)


def test_a_failure_names_the_rank_the_agent_saw_fail_first(tmp_path: Path) -> None:
    said = failure(tmp_path, TORCHRUN_LOG, 1)
    assert said == "distributed worker rank 1 killed by signal SIGKILL"
    (tmp_path / "rank1.error").write_text("ValueError: no rows\nTraceback ...\n")
    said = failure(tmp_path, TORCHRUN_LOG.replace("-9 (pid", "1 (pid"), 1)
    assert said == "distributed worker rank 1 exit code 1: ValueError: no rows"
    assert failure(tmp_path, "boom\n", 2) == (
        "distributed retrain failed (torch.distributed.run exit code 2): boom")
