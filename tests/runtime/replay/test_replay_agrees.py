"""The replay tool and the daemon agree on a test stream, however fast its files arrive.

The flipping stream, flipped back at row 2300, is dropped into a watched directory as
100-row CSV files, all at once (a backlog), and the daemon runs until drained;
``driftloop replay``'s engine runs the same rows in 100-row steps. Both see the same
alarms on the same rows before the first retrain and request every retrain on the same
rows; their candidates are trained with seeds of their own trigger ids (event numbers
differ), so the gate's decisions are compared by outcome.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runtime.config import parse_config
from runtime.daemon import Daemon
from runtime.replay.engine import LoopReplay, Schedule
from runtime.replay.stream import LoggedStream
from runtime.store import events as ev
from runtime.store.db import Database
from runtime.store.events import EventLog
from tests.runtime.replay.test_replay import ROWS, config_data, flipping_stream

FILE_ROWS = 100
SECOND_FLIP = 2300


def _decisions(state_dir: Path) -> list[tuple[Any, ...]]:
    db = Database.for_state_dir(state_dir, None)
    out: list[tuple[Any, ...]] = []
    for e in EventLog(db).list():
        p = e.raw
        if e.kind == ev.DRIFT_DETECTED:
            out.append((e.kind, e.model_version, p["detector"], p["row"], p["action"]))
        elif e.kind == ev.RETRAIN_REQUESTED:
            out.append((e.kind, e.model_version, p["onset"], p["upto"]))
        elif e.kind in (ev.GATE_PASSED, ev.GATE_FAILED, ev.MODEL_PROMOTED):
            out.append((e.kind, e.model_version))
    db.dispose()
    return out


@pytest.mark.slow
def test_the_daemon_on_a_backlog_agrees_with_the_replay(tmp_path: Path) -> None:
    data = config_data(tmp_path)
    data["retrain"]["budget"]["seconds"] = None  # type: ignore[index]  # as replay runs it
    cfg = parse_config(data)
    frame = flipping_stream()
    frame.loc[SECOND_FLIP:, "label"] = 1 - frame.loc[SECOND_FLIP:, "label"]  # and back
    inbox = tmp_path / "in"
    inbox.mkdir()
    for i in range(0, ROWS, FILE_ROWS):
        tmp = inbox / f"part-{i // FILE_ROWS:04d}.csv.tmp"
        frame.iloc[i : i + FILE_ROWS].to_csv(tmp, index=False)
        tmp.rename(tmp.with_suffix(""))
    Daemon(cfg).run(until_drained=True)
    daemon = _decisions(cfg.state_dir)
    stream = LoggedStream(frame, cfg.schema)
    result = LoopReplay(cfg, stream, Schedule("drift"), batch_rows=FILE_ROWS).run(
        tmp_path / "replay")
    replay = _decisions(tmp_path / "replay")
    requested = [(ev.RETRAIN_REQUESTED, r.onset, r.requested_at + 1) for r in result.retrains]
    assert requested, replay
    asked = [(d[0], d[2], d[3]) for d in daemon if d[0] == ev.RETRAIN_REQUESTED]
    assert asked == requested, (daemon, replay, requested)  # seq = position + 1
    before = next(i for i, d in enumerate(daemon) if d[0] == ev.RETRAIN_REQUESTED)
    alarms = [d for d in daemon[:before] if d[0] == ev.DRIFT_DETECTED]
    assert alarms == [d for d in replay if d[0] == ev.DRIFT_DETECTED][: len(alarms)], (
        daemon, replay)
    assert len(asked) == len(requested) >= 2, (daemon, replay, requested)  # both flips
    outcomes = [d for d in daemon if d[0] in (ev.GATE_PASSED, ev.GATE_FAILED, ev.MODEL_PROMOTED)]
    assert outcomes == [d for d in replay if d[0] in (ev.GATE_PASSED, ev.GATE_FAILED,
                                                      ev.MODEL_PROMOTED)], (daemon, replay)
    # the replay requests through the daemon's own alarms and queue: the same events
    assert [d for d in daemon if d[0] == ev.RETRAIN_REQUESTED] == [
        d for d in replay if d[0] == ev.RETRAIN_REQUESTED], (daemon, replay)
