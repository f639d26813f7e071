"""The live status line of ``driftloop run`` on a terminal."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from runtime.cli.progress import LiveProgress
from runtime.store import events as ev
from runtime.store.db import Database
from runtime.store.events import EventLog


class FakeRun:
    def __init__(self) -> None:
        self.rows_seen = 0
        self.trigger: str | None = None

    def retraining(self) -> str | None:
        return self.trigger

    def champion(self) -> str | None:
        return "v1"


def test_status_line_shows_rows_and_retrain_epochs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal: nothing truncated
    db = Database.for_state_dir(tmp_path, None)
    db.create_all()
    log = EventLog(db)
    out, run = io.StringIO(), FakeRun()
    live = LiveProgress(out, total_rows=1000, epochs=10, interval=0.01)
    live.attach(log, run)
    with live:
        live.line("ingest  rows=    250  champion=v1")  # folded into the status line
        run.rows_seen = 500
        live.line("drift   row=    480  adwin on error")  # printed above it
        run.trigger = "drift-7"
        log.append(
            ev.RETRAIN_STARTED, {"trigger_id": "drift-7", "champion": "v1", "candidate": "v2"}
        )
        log.append(ev.RETRAIN_PROGRESS, {"trigger_id": "drift-7", "epoch": 3, "loss": 0.25})
        deadline = time.monotonic() + 5
        while "epoch 3/10" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
    text = out.getvalue()
    assert "drift   row=    480  adwin on error\n" in text
    assert "ingest  rows=" not in text
    assert "500/1,000 rows (50%)" in text and "champion v1" in text
    assert "retrain drift-7 v1→v2: ███░░░░░░░ epoch 3/10 loss 0.2500" in text
    assert text.endswith("\r\x1b[2K")  # the status line is cleared at the end
    db.dispose()
