"""A full disk or read-only state: ingest says so (507 / 503), readiness goes false, one
error line names it, and all recovers by itself when writes succeed again."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from runtime.daemon import Daemon
from runtime.service.api import create_app
from tests.conftest import small_config

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BODY = {"rows": [[1.0] * 9], "labels": [1]}


def _served(state: Path) -> tuple[Daemon, TestClient]:
    cfg = small_config(state, source={"kind": "http"}, api={"port": 0, "token_env": None})
    daemon = Daemon(cfg)
    daemon.open()
    return daemon, TestClient(create_app(daemon, cfg.api, TOKEN))  # type: ignore[arg-type]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Daemon, TestClient]]:
    daemon, client = _served(tmp_path)
    yield daemon, client
    daemon.close()


def _ingest(client: TestClient, i: int) -> Any:
    return client.post("/v1/ingest", json={**BODY, "row_ids": [f"r{i}"]}, headers=AUTH)


def _disk_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and "disk is full" in r.getMessage()
    ]


@pytest.mark.parametrize(
    ("message", "status", "words"),
    [
        ("database or disk is full", 507, "disk is full"),
        ("attempt to write a readonly database", 503, "read-only"),
    ],
)
def test_a_refused_write_is_named_and_recovers(
    served: tuple[Daemon, TestClient],
    caplog: pytest.LogCaptureFixture,
    message: str,
    status: int,
    words: str,
) -> None:
    daemon, client = served
    assert _ingest(client, 0).status_code == 200
    broken = {"on": True}

    def refuse(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if broken["on"] and statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            raise sqlite3.OperationalError(message)

    event.listen(daemon.db.engine, "before_cursor_execute", refuse)
    try:
        with caplog.at_level(logging.ERROR):
            for i in (1, 2):
                r = _ingest(client, i)
                assert r.status_code == status and words in r.json()["error"], r.text
                assert "Retry-After" in r.headers and "\n" not in r.json()["error"]
            ready = client.get("/readyz")
            assert ready.status_code == 503 and words in ready.json()["reason"]
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and words in errors[0].getMessage()
        broken["on"] = False  # space returns: readiness finds out by itself
        assert client.get("/readyz").status_code == 200
        assert _ingest(client, 3).status_code == 200
    finally:
        event.remove(daemon.db.engine, "before_cursor_execute", refuse)


def test_a_real_full_tmpfs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        daemon, client = _served(mnt)
        try:
            assert _ingest(client, 0).status_code == 200
            filler = mnt / "filler"
            with filler.open("wb") as fh, caplog.at_level(logging.ERROR):
                try:
                    while True:
                        fh.write(b"\0" * 65536)
                except OSError:
                    pass
            with caplog.at_level(logging.ERROR):
                codes = [_ingest(client, i).status_code for i in range(1, 40)]
                assert 507 in codes and 500 not in codes, codes
                assert client.get("/readyz").status_code == 503
            assert len(_disk_errors(caplog)) == 1
            filler.unlink()
            assert client.get("/readyz").status_code == 200
            assert _ingest(client, 100).status_code == 200
        finally:
            daemon.close()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
