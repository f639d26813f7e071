"""Ingestion speed never decides what is retrained: a backlog gives a slow stream's decisions.

The same stream runs twice through a real daemon: once arriving slowly (the source pauses
while a retrain runs, ``block_on_retrain``), once as a backlog (the source keeps
delivering during every retrain, as a directory full of files does). The rows stored
while a retrain ran are held from the detectors and fed after the gate decided, so both
runs see the same alarms, request the same retrains on the same rows and reach the same
gate decisions.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from runtime.daemon import Daemon
from runtime.store import events as ev
from runtime.store.db import Database
from runtime.store.events import EventLog
from tests.conftest import THREE_SEGMENTS, small_config


def _decisions(tmp_path: Path, block_on_retrain: bool) -> tuple[list[tuple[Any, ...]], int]:
    """The run's decisions (alarms, requests, gate verdicts, promotions) without event
    ids, and how many rows were held back from the detectors while retrains ran."""
    source = copy.deepcopy(THREE_SEGMENTS)
    source["block_on_retrain"] = block_on_retrain
    retrain = {  # no wall-clock limit: both runs train the same candidates
        "strategy": {"kind": "replay", "lr": 0.003, "batch_size": 64},
        "buffer": {"kind": "reservoir", "capacity": 1000},
        "budget": {"epochs": 20, "seconds": None},
        "timeout_seconds": 300,
    }
    cfg = small_config(tmp_path, source=source, retrain=retrain)
    held = 0
    daemon = Daemon(cfg)
    step = daemon.step

    def counting_step() -> bool:
        nonlocal held
        held = max(held, daemon.backlog.rows)
        return step()

    daemon.step = counting_step  # type: ignore[method-assign]
    daemon.run(until_drained=True)
    db = Database.for_state_dir(cfg.state_dir, None)
    out: list[tuple[Any, ...]] = []
    for e in EventLog(db).list():
        p = e.raw
        if e.kind == ev.DRIFT_DETECTED:
            out.append((e.kind, e.model_version, p["detector"], p["row"], p["action"]))
        elif e.kind == ev.RETRAIN_REQUESTED:
            out.append((e.kind, e.model_version, p["onset"], p["upto"], p["labelled_rows"]))
        elif e.kind in (ev.GATE_PASSED, ev.GATE_FAILED, ev.MODEL_PROMOTED):
            out.append((e.kind, e.model_version))
    db.dispose()
    return out, held


@pytest.mark.slow
def test_a_backlog_and_a_slow_stream_give_the_same_decisions(tmp_path: Path) -> None:
    slow, held_slow = _decisions(tmp_path / "slow", block_on_retrain=True)
    backlog, held = _decisions(tmp_path / "backlog", block_on_retrain=False)
    assert held_slow == 0 and held > 0, "the backlog run stored rows while retraining"
    kinds = [d[0] for d in slow]
    assert kinds.count(ev.RETRAIN_REQUESTED) >= 2, slow  # segment 2 and segment 3
    assert (ev.MODEL_PROMOTED, "v2") in slow, slow  # and segment 3 judged on v2's watch
    assert backlog == slow
