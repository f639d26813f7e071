"""The daemon as a real process: a watched directory, bad files, SIGTERM, the lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml
from sqlalchemy.exc import OperationalError

from runtime.intake.demo_stream import AGRAWAL_FEATURES, segment_rows
from runtime.intake.settings import Segment
from runtime.store import events as ev
from runtime.store.db import Database
from runtime.store.events import EventLog

ROOT = Path(__file__).resolve().parents[2]


def _frame(n: int, seed: int, prefix: str) -> pd.DataFrame:
    seg = Segment(rows=n, function=1, where={"age": (20, 40)})
    rows = list(segment_rows(seg, seed=seed))
    frame = pd.DataFrame([r[0] for r in rows], columns=list(AGRAWAL_FEATURES))
    frame["class"] = [r[1] for r in rows]
    frame["row_id"] = [f"{prefix}{i}" for i in range(n)]
    return frame


def _wait_for(state: Path, kind: str, timeout: float = 180.0) -> list[ev.Event]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (state / "driftloop.db").exists():
            db = Database.for_state_dir(state, None)
            try:
                got = EventLog(db).list(kinds=[kind])
            except OperationalError:  # the daemon is still creating its tables
                got = []
            finally:
                db.dispose()
            if got:
                return got
        time.sleep(0.3)
    raise AssertionError(f"no {kind} event within {timeout} s")


def test_directory_daemon_survives_bad_files_and_stops_on_sigterm(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    boot = tmp_path / "boot.csv"
    _frame(600, 1, "b").to_csv(boot, index=False)
    cfg = {
        "state_dir": str(tmp_path / "state"),
        "schema": {"features": list(AGRAWAL_FEATURES), "label": "class", "classes": [0, 1]},
        "source": {"kind": "directory", "path": str(inbox), "poll_seconds": 0.2},
        "bootstrap": {"rows": 600, "data": str(boot), "epochs": 5},
        "model": {"kind": "mlp", "hidden": [16]},
        "detectors": [{"kind": "adwin", "signal": "error"}],
        "scheduler": {"tick_seconds": 0.2},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    state = tmp_path / "state"
    log_file = (tmp_path / "daemon.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli.main", "run", "--config", str(path)],
        cwd=ROOT,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for(state, ev.DAEMON_STARTED)
        _wait_for(state, ev.MODEL_PROMOTED)  # v1 from bootstrap.data
        second = subprocess.run(
            [sys.executable, "-m", "runtime.cli.main", "run", "--config", str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert second.returncode == 1
        assert "another driftloop daemon" in second.stderr and second.stderr.count("\n") == 1
        bad = _frame(20, 2, "x").astype(object)
        bad.loc[3, "age"] = "old"
        bad.to_csv(inbox / "a.csv", index=False)
        (inbox / "b.parquet").write_bytes(b"garbage")
        _frame(30, 3, "y").to_csv(inbox / "c.csv", index=False)
        rejected = _wait_for(state, ev.INGEST_REJECTED)
        time.sleep(1.5)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        assert code == 0 and time.monotonic() - t0 < 15
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        log_file.close()
    db = Database.for_state_dir(state, None)
    log = EventLog(db)
    rejected = log.list(kinds=[ev.INGEST_REJECTED])
    assert {Path(e.raw["source"]).name for e in rejected} == {"a.csv", "b.parquet"}
    assert rejected[0].raw["accepted"] == 19 and rejected[0].raw["rejected"] == 1
    stopped = log.list(kinds=[ev.DAEMON_STOPPED])
    assert stopped and stopped[-1].raw["reason"] == "stopped by signal"
    from runtime.store.rows import last_seq

    assert last_seq(db) == 600 + 19 + 30
