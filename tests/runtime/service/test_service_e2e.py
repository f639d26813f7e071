"""The daemon as a real service process: its API over TCP, kill -9, SIGTERM, a retrain
interrupted by a crash, and (slow) PostgreSQL + Redis Streams with a drifting stream."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from runtime.store import events as ev
from runtime.store.db import Database, retrain_requests, rows
from tests.runtime.processes import AUTH, Service, base_config, free_port, wait_until
from tests.runtime.processes import rows as synthetic


def _stored_ids(state: Path) -> set[str]:
    db = Database.for_state_dir(state, None)
    with db.connect() as conn:
        got = {r[0] for r in conn.execute(select(rows.c.row_id))}
    db.dispose()
    return got


def test_acknowledged_rows_survive_kill_9_and_sigterm_stops_in_time(tmp_path: Path) -> None:
    cfg = base_config(tmp_path, free_port())
    svc = Service(tmp_path, cfg).start()
    acked: list[str] = []
    stop = threading.Event()

    def writer() -> None:  # keeps sending while the daemon is killed under it
        data = synthetic(50, seed=1)
        i = 0
        while not stop.is_set():
            ids = [f"k{i}-{j}" for j in range(50)]
            try:
                r = svc.client.post(
                    "/v1/ingest",
                    json={"rows": [d[0] for d in data], "row_ids": ids},
                    headers=AUTH,
                )
            except Exception:
                return
            if r.status_code == 200:
                acked.extend(ids)
            i += 1

    try:
        t = threading.Thread(target=writer)
        t.start()
        wait_until(lambda: len(acked) >= 500, 60, "500 acknowledged rows", svc)
        svc.kill(signal.SIGKILL)
        svc.wait(10)
        stop.set()
        t.join(30)
        stored = _stored_ids(tmp_path / "state")
        assert set(acked) <= stored, f"{len(set(acked) - stored)} acknowledged rows lost"

        svc.start()  # the kernel released the lock with the process
        svc.ingest(synthetic(10, seed=2))
        began = time.monotonic()
        svc.kill(signal.SIGTERM)
        assert svc.wait(20) == 0
        assert time.monotonic() - began < 15, "SIGTERM took too long"
    finally:
        stop.set()
        svc.stop()
    db = Database.for_state_dir(tmp_path / "state", None)
    from runtime.store.events import EventLog

    stopped = EventLog(db).list(kinds=[ev.DAEMON_STOPPED])
    db.dispose()
    assert stopped[-1].raw["reason"] == "stopped by signal"
    log_lines = [line for line in svc.tail(100_000).splitlines() if line.startswith("{")]
    assert log_lines and all("level" in json.loads(line) for line in log_lines)  # JSON logs


@pytest.mark.slow
def test_retrain_interrupted_by_a_crash_runs_again_exactly_once(tmp_path: Path) -> None:
    cfg = base_config(
        tmp_path,
        free_port(),
        retrain={
            "strategy": {"kind": "replay", "lr": 0.003, "batch_size": 32},
            "buffer": {"kind": "reservoir", "capacity": 300},
            "budget": {"epochs": 10000, "seconds": 6},
            "timeout_seconds": 120,
        },
    )
    svc = Service(tmp_path, cfg).start()
    try:
        svc.ingest(synthetic(500, seed=1))
        wait_until(lambda: svc.client.get("/v1/status").json()["champion"] == "v1", 120, "v1", svc)
        svc.ingest(synthetic(300, seed=2, age=(60, 81)))
        r = svc.client.post(
            "/v1/retrain", json={"since_seq": 1}, headers={**AUTH, "Idempotency-Key": "crash-1"}
        )
        assert r.status_code == 201, r.text
        wait_until(
            lambda: any(
                e["payload"].get("trigger_id") == "manual-crash-1"
                for e in svc.events(kind="retrain.progress")
            ),
            180,
            "the retrain to make progress",
            svc,
        )
        svc.kill(signal.SIGKILL)
        svc.wait(10)
        svc.start()
        wait_until(
            lambda: bool(svc.events(kind=["retrain.finished", "retrain.failed"])),
            240,
            "the re-run to finish",
            svc,
        )
        time.sleep(1.0)
        mine = [e for e in svc.events() if e["payload"].get("trigger_id") == "manual-crash-1"]
    finally:
        svc.stop()
    kinds = [e["kind"] for e in mine if e["kind"] != ev.RETRAIN_PROGRESS]
    assert kinds.count(ev.RETRAIN_REQUESTED) == 1
    assert kinds.count(ev.RETRAIN_STARTED) == 2, kinds  # the crashed run and its re-run
    assert kinds.count(ev.RETRAIN_FINISHED) == 1, kinds
    assert kinds.count(ev.GATE_PASSED) + kinds.count(ev.GATE_FAILED) == 1, kinds
    db = Database.for_state_dir(tmp_path / "state", None)
    with db.connect() as conn:
        status, attempts = conn.execute(
            select(retrain_requests.c.status, retrain_requests.c.attempts).where(
                retrain_requests.c.trigger_id == "manual-crash-1"
            )
        ).one()
    db.dispose()
    assert (status, attempts) == ("finished", 2)


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_and_redis_stream_a_drifting_dataset_end_to_end(tmp_path: Path) -> None:
    """The daemon as a process on PostgreSQL, fed through a Redis stream: the drift to
    customers it never saw is detected, retrained on and promoted (v2); the segment with
    flipped labels is retrained on and refused. Checked through the HTTP API."""
    import copy

    import redis as redis_client

    from runtime.intake.demo_stream import AGRAWAL_FEATURES
    from tests.conftest import SMALL
    from tests.runtime.processes import postgres_schema

    r = redis_client.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        r.ping()
    except redis_client.ConnectionError as err:
        pytest.skip(f"redis not reachable: {err}")
    stream = f"driftloop-e2e-{tmp_path.name[-12:]}-{time.monotonic_ns()}"

    def publish(batch: list[tuple[list[float], int]], prefix: str) -> None:
        pipe = r.pipeline()
        for i, (x, y) in enumerate(batch):
            row = {**dict(zip(AGRAWAL_FEATURES, x, strict=True)), "class": int(y)}
            pipe.xadd(stream, {"row": json.dumps({**row, "row_id": f"{prefix}{i}"})})
        pipe.execute()

    with postgres_schema() as url:
        cfg = copy.deepcopy(SMALL)
        cfg.update(
            state_dir=str(tmp_path / "state"),
            database_url=url,
            source={"kind": "redis", "stream": stream, "batch_size": 200, "block_ms": 100},
            scheduler={"tick_seconds": 0.1},
            api={"port": free_port()},
            leader={"name": "e2e", "instance": "solo"},
        )
        svc = Service(tmp_path, cfg).start()
        try:
            publish(synthetic(1800, seed=11, age=(20, 40)), "young-")
            publish(synthetic(2200, seed=12, age=(60, 81)), "old-")
            wait_until(
                lambda: svc.client.get("/v1/status").json()["champion"] == "v2",
                400,
                "v2 to be promoted after the drift",
                svc,
            )
            # the detectors re-baseline on v2; ADWIN needs a stretch of the new normal
            # before the labelling bug to see the error rate change
            publish(synthetic(1200, seed=15, age=(60, 81)), "old-more-")
            wait_until(
                lambda: svc.client.get("/v1/status").json()["rows_seen"] >= 5200,
                120,
                "the clean rows to be monitored",
                svc,
            )
            publish(synthetic(1400, seed=13, age=(60, 81), noise=0.4), "noisy-")
            wait_until(lambda: bool(svc.events(kind="gate.failed")), 400, "the refusal", svc)
            wait_until(
                lambda: svc.client.get("/v1/status").json()["rows"] == 6600, 60, "all rows", svc
            )
            events = svc.events()
            status = svc.client.get("/v1/status").json()
            models = svc.client.get("/v1/models").json()
            x = [synthetic(3, seed=14, age=(60, 81))[i][0] for i in range(3)]
            predicted = svc.client.post("/v1/predict", json={"rows": x}).json()
            metrics = svc.client.get("/metrics").text
        finally:
            svc.stop()
            r.delete(stream)
            r.close()
    kinds = [e["kind"] for e in events if e["kind"] != ev.RETRAIN_PROGRESS]
    expected = [
        ev.DAEMON_STARTED,
        ev.MODEL_PROMOTED,  # v1, bootstrapped from the stream
        ev.DRIFT_DETECTED,
        ev.RETRAIN_REQUESTED,
        ev.RETRAIN_STARTED,
        ev.RETRAIN_FINISHED,
        ev.GATE_PASSED,
        ev.MODEL_PROMOTED,  # v2
        ev.DRIFT_DETECTED,
        ev.RETRAIN_STARTED,
        ev.RETRAIN_FINISHED,
        ev.GATE_FAILED,
    ]
    it = iter(kinds)
    assert all(k in it for k in expected), kinds
    promoted = [e["model_version"] for e in events if e["kind"] == ev.MODEL_PROMOTED]
    assert promoted[:2] == ["v1", "v2"]
    # the default labelled-rows backstop may promote once more on segment 2's rows; the
    # bad labels of segment 3 are refused either way
    champion = promoted[-1]
    assert events_after(events, champion)[-1] == ev.GATE_FAILED
    assert status["champion"] == champion and status["leader"] is True
    assert status["rows"] == 1800 + 2200 + 1200 + 1400  # every entry stored exactly once
    assert {m["version"]: m["status"] for m in models["models"]}[champion] == "champion"
    assert predicted["model_version"] == champion
    assert f"driftloop_champion_version {float(champion[1:])}" in metrics


def events_after(events: list[dict[str, Any]], version: str) -> list[str]:
    """The gate decisions after ``version`` was promoted."""
    at = next(i for i, e in enumerate(events)
              if e["kind"] == ev.MODEL_PROMOTED and e["model_version"] == version)
    return [e["kind"] for e in events[at:] if e["kind"] in (ev.GATE_PASSED, ev.GATE_FAILED)]
