"""Event times over HTTP: ``POST /v1/ingest`` takes ``timestamps`` beside the rows for
``schema.timestamp_column`` (issue 18), ISO text or epoch seconds, stored per row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from runtime.daemon import Daemon
from runtime.service.api import create_app
from runtime.store.db import quarantine, row_times
from tests.conftest import FEATURES, SMALL, small_config

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _client(tmp_path: Path, timestamp_column: str | None) -> tuple[Daemon, TestClient]:
    schema: dict[str, Any] = {**SMALL["schema"], "timestamp_column": timestamp_column}
    cfg = small_config(tmp_path, schema=schema, source={"kind": "http"},
                       api={"port": 0, "token_env": None})
    daemon = Daemon(cfg)
    daemon.open()
    return daemon, TestClient(create_app(daemon, cfg.api, TOKEN))  # type: ignore[arg-type]


def _rows(n: int) -> list[list[float]]:
    return [[float(20 + i)] * len(FEATURES) for i in range(n)]


def test_ingest_stores_each_rows_time_and_refuses_an_unreadable_one(tmp_path: Path) -> None:
    daemon, client = _client(tmp_path, "ts")
    try:
        times = ["2026-03-01T10:00:00+01:00", 1772359200.5, "not a time"]
        r = client.post("/v1/ingest", json={"rows": _rows(3), "labels": [0, 1, 0],
                                            "row_ids": ["a", "b", "c"], "timestamps": times},
                        headers=AUTH)
        assert r.status_code == 200, r.text
        assert (r.json()["accepted"], r.json()["rejected"]) == (2, 1)
        with daemon.db.connect() as conn:
            stored = sorted(str(t) for (t,) in conn.execute(select(row_times.c.event_at)))
            reasons = [q for (q,) in conn.execute(select(quarantine.c.reason))]
        assert stored == ["2026-03-01T09:00:00.000Z", "2026-03-01T10:00:00.500Z"]
        assert any("timestamp 'ts'" in q for q in reasons)
        # numbers only: the fast decoder's path stores them alike
        r = client.post("/v1/ingest", json={"rows": _rows(1), "timestamps": [0]}, headers=AUTH)
        assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    finally:
        daemon.close()


@pytest.mark.parametrize(("column", "times", "said"), [
    (None, ["2026-03-01"], "the schema names no timestamp_column"),
    ("ts", ["2026-03-01", "2026-03-02"], "timestamps has 2 entries for 1 rows"),
])
def test_timestamps_the_schema_cannot_take_are_refused_in_one_line(
    tmp_path: Path, column: str | None, times: list[str], said: str
) -> None:
    daemon, client = _client(tmp_path, column)
    try:
        r = client.post("/v1/ingest", json={"rows": _rows(1), "timestamps": times}, headers=AUTH)
        assert r.status_code == 422 and said in r.json()["error"], r.text
        with daemon.db.connect() as conn:
            assert conn.execute(select(row_times.c.event_at)).first() is None
    finally:
        daemon.close()
