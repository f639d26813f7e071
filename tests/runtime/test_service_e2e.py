"""The daemon as a real service process: its API over TCP, kill -9, SIGTERM, a retrain
interrupted by a crash, and (slow) PostgreSQL + Redis Streams with a drifting stream."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from runtime import events as ev
from runtime.db import Database, retrain_requests, rows
from tests.runtime.service import AUTH, Service, base_config, free_port, wait_until
from tests.runtime.service import rows as synthetic


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
    from runtime.events import EventLog

    stopped = EventLog(db).list(kinds=[ev.DAEMON_STOPPED])
    db.dispose()
    assert stopped[-1].payload["reason"] == "stopped by signal"
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
            lambda: bool(svc.events(kind="retrain.progress")), 180, "the retrain to make progress"
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
