"""Helpers for tests that run the daemon as a real process with its API."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from runtime.config import SchemaConfig
from runtime.intake.demo_stream import AGRAWAL_FEATURES, segment_rows
from runtime.intake.settings import Segment
from runtime.store.db import Database

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "e2e-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
AGRAWAL_SCHEMA = SchemaConfig(features=list(AGRAWAL_FEATURES), label="class")
"""The schema of :func:`rows` (the broker tests' rows)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rows(n: int, seed: int, age: tuple[float, float] = (20, 40), noise: float = 0.0) -> list[Any]:
    seg = Segment(rows=n, function=1, where={"age": age}, label_noise=noise)
    return list(segment_rows(seg, seed=seed))


def base_config(tmp: Path, port: int, **overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "state_dir": str(tmp / "state"),
        "seed": 3,
        "schema": {"features": list(AGRAWAL_FEATURES), "label": "class", "classes": [0, 1]},
        "source": {"kind": "http"},
        "model": {"kind": "mlp", "hidden": [16]},
        "bootstrap": {"rows": 400, "epochs": 3},
        "detectors": [{"kind": "adwin", "signal": "error", "delta": 0.002}],
        "scheduler": {"tick_seconds": 0.1},
        "api": {"port": port},
    }
    cfg.update(overrides)
    return cfg


class Service:
    """``driftloop run --config …`` in a subprocess, and an HTTP client for its API."""

    def __init__(self, tmp: Path, cfg: dict[str, Any], name: str = "daemon") -> None:
        self.cfg = cfg
        self.path = tmp / f"{name}.yaml"
        self.path.write_text(yaml.safe_dump(cfg))
        self.url = f"http://127.0.0.1:{cfg['api']['port']}"
        self.log = tmp / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def start(self, timeout: float = 120.0) -> Service:
        env = {**os.environ, "DRIFTLOOP_TOKEN": TOKEN, "DRIFTLOOP_LOG_LEVEL": "INFO"}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "runtime.cli.main", "run", "--config", str(self.path)],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._up, timeout, f"the API at {self.url} to answer", self)
        return self

    def _up(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.tail()}")
        try:
            return self.client.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.client.close()

    def events(self, **params: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        after = None
        while True:
            q = {**params, "limit": 1000, **({"after_id": after} if after else {})}
            page = self.client.get("/v1/events", params=q).json()
            out += page["events"]
            after = page["next_after_id"]
            if after is None:
                return out

    def ingest(self, batch: list[Any], ids: list[str] | None = None, labels: bool = True) -> Any:
        body: dict[str, Any] = {"rows": [r[0] for r in batch]}
        if labels:
            body["labels"] = [int(r[1]) for r in batch]
        if ids is not None:
            body["row_ids"] = ids
        r = self.client.post("/v1/ingest", json=body, headers=AUTH)
        assert r.status_code == 200, r.text
        return r.json()


def wait_until(
    ok: Callable[[], bool], timeout: float, what: str, service: Service | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ok():
            return
        time.sleep(0.2)
    extra = f"\n{service.tail()}" if service is not None else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{extra}")


PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh schema on the PostgreSQL server; yields a ``database_url`` that uses it."""
    admin = Database(PG_URL + "?connect_timeout=3")
    try:
        with admin.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {exc.orig}")
    schema = f"driftloop_svc_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
