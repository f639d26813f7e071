"""``driftloop replay`` runs the triggers of ``policy.triggers`` as the daemon does:
labelled rows, the accuracy floor, the schedule and the champion's age, on the stream's
clock (rows ``row_seconds`` apart, or the schema's timestamp column)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from runtime.config import parse_config
from runtime.replay.clock import EPOCH, StreamClock, interval_next_fire
from runtime.replay.compare import Options, run_schedule, summary
from runtime.replay.engine import Schedule
from runtime.replay.stream import LoggedStream
from tests.runtime.replay.test_replay import BOOT, FLIP, config_data, flipping_stream

QUIET = [{"kind": "ks", "signal": "features"}]  # feature drift alerts: never a retrain
EVERY_600 = [BOOT - 1 + 600 * k for k in range(1, 5)]  # 1099, 1699, 2299, 2899


def stationary(n: int = 3000) -> pd.DataFrame:
    frame = flipping_stream(n)
    frame["label"] = (frame["a"] > 0).astype(int)  # the concept never changes
    return frame


def replay(tmp: Path, frame: pd.DataFrame, triggers: dict[str, Any], **opts: Any) -> Any:
    data = config_data(tmp)
    data["detectors"] = QUIET
    policy = data["policy"]
    assert isinstance(policy, dict)
    data["policy"] = {**policy, "triggers": {"labelled_rows": None, **triggers}}
    data.update(opts.pop("extra", {}))
    cfg = parse_config(data)
    return run_schedule(cfg, LoggedStream(frame, cfg.schema), Schedule("drift"),
                        Options(batch_rows=100, **opts))


def test_every_600_labelled_rows_counted_after_v1(tmp_path: Path) -> None:
    r = replay(tmp_path, stationary(), {"labelled_rows": {"every": 600}})
    assert [x.requested_at for x in r.retrains] == EVERY_600
    assert [x.trigger for x in r.retrains] == [f"labelled_rows-{p - 599 + 1}" for p in EVERY_600]
    assert [x.first_row for x in r.retrains] == [p - 599 + 1 for p in EVERY_600]
    assert r.by_trigger() == {"labelled_rows": 4}
    assert summary(r)["by_trigger"] == {"labelled_rows": 4}


def test_labelled_rows_wait_for_late_labels(tmp_path: Path) -> None:
    r = replay(tmp_path, stationary(), {"labelled_rows": {"every": 600}}, label_delay=300)
    assert [x.requested_at for x in r.retrains] == [p + 300 for p in EVERY_600[:3]]


def test_the_accuracy_floor_retrains_once_the_concept_flips(tmp_path: Path) -> None:
    frame = flipping_stream()
    r = replay(tmp_path, frame, {"accuracy_floor": {"below": 0.6, "window": 200}})
    never = replay(tmp_path, frame, {})
    assert not never.retrains
    first = r.retrains[0]
    assert first.trigger.startswith("accuracy_floor-v1-")
    assert FLIP < first.requested_at <= FLIP + 300  # within the window after the flip
    assert r.accuracy > never.accuracy + 0.2


@pytest.mark.parametrize("clock", ["row_seconds", "timestamps"])
def test_the_schedule_runs_on_the_streams_time(tmp_path: Path, clock: str) -> None:
    frame = stationary()
    if clock == "row_seconds":  # rows a minute apart: every 10h is every 600 rows
        r = replay(tmp_path, frame, {"schedule": {"every": "10h"}}, row_seconds=60.0)
    else:
        start = datetime(2024, 5, 1, tzinfo=UTC)
        frame["ts"] = [(start + timedelta(minutes=i)).isoformat() for i in range(len(frame))]
        r = replay(tmp_path, frame, {"schedule": {"every": "10h"}},
                   extra={"schema": {"features": ["a", "b"], "classes": [0, 1],
                                     "timestamp_column": "ts"}})
    assert [x.requested_at for x in r.retrains] == EVERY_600
    assert all(x.trigger.startswith("schedule-") for x in r.retrains)


def test_an_old_champion_is_retrained_once(tmp_path: Path) -> None:
    r = replay(tmp_path, stationary(), {"max_age": {"champion_older_than": "15m"}})
    first = r.retrains[0]
    assert (first.trigger, first.requested_at) == ("max_age-v1", BOOT - 1 + 1000)
    assert [x.trigger for x in r.retrains].count("max_age-v1") == 1
    later = [x for x in r.retrains[1:]]  # a promoted v2 ages 900 rows after it was made
    assert all(x.requested_at - first.ready_at > 900 for x in later)


def test_the_stream_clock() -> None:
    clock = StreamClock(10, row_seconds=2.0)
    assert clock.at(3) == EPOCH + timedelta(seconds=6)
    clock.advance(99)
    assert clock.now() == clock.at(9)  # past the end: the last row's time
    stamps = StreamClock(3, pd.Series([0, 60, 120]))  # epoch seconds
    assert stamps.at(2) == datetime(1970, 1, 1, 0, 2, tzinfo=UTC)
    with pytest.raises(ValueError, match="unreadable"):
        StreamClock(2, pd.Series(["2024-01-01", "not a time"]))
    after = interval_next_fire(600.0, None, EPOCH)
    assert after(EPOCH) == EPOCH + timedelta(seconds=600)
    assert after(EPOCH + timedelta(seconds=600)) == EPOCH + timedelta(seconds=1200)
    with pytest.raises(ValueError, match="cron"):
        interval_next_fire(None, "0 * * * *", EPOCH)


def test_rows_are_scored_alike_with_and_without_triggers(tmp_path: Path) -> None:
    r = replay(tmp_path, stationary(), {"labelled_rows": {"every": 600}})
    assert not np.isnan(r.correct[BOOT:]).any()
