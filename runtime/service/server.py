"""The API server: uvicorn in a thread of the daemon's process.

The daemon starts it in ``run`` when ``api:`` is configured and stops it first thing
on shutdown (in-flight requests finish, new connections are refused), so that no row
is acknowledged after the daemon stopped monitoring. Also :class:`HttpSource`, the
source of ``source: {kind: http}``: rows arrive only through ``POST /v1/ingest``.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time

import uvicorn

from runtime.config import ApiConfig, DriftloopConfig
from runtime.service.api import Host, create_app

log = logging.getLogger(__name__)
SWITCH_INTERVAL = 0.001
"""Seconds a thread may hold the GIL while another waits for it, while the API serves."""
CHECKPOINT_SECONDS = 0.5
"""How often the serving daemon checkpoints SQLite's WAL in the background."""


class ServerError(RuntimeError):
    """The API could not start (bad token setup, port in use)."""


def resolve_token(api: ApiConfig) -> str | None:
    """The bearer token from ``api.token_env``; an unset or empty variable is an error
    (a service must not come up with its write endpoints open or silently disabled)."""
    if api.token_env is None:
        return None
    token = os.environ.get(api.token_env, "")
    if not token.strip():
        raise ServerError(
            f"the API needs a bearer token in ${api.token_env} "
            "(or set api.token_env: null for a read-only API)"
        )
    return token.strip()


class ApiServer:
    """Serves :func:`runtime.service.api.create_app` for ``host`` until :meth:`stop`."""

    def __init__(self, host: Host, api: ApiConfig, token: str | None) -> None:
        self.api = api
        app = create_app(host, api, token)
        config = uvicorn.Config(
            app,
            host=api.host,
            port=api.port,
            log_config=None,  # the daemon's JSON logging stays in charge
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_keep_alive=30,  # clients batching every few seconds keep their connection
            timeout_graceful_shutdown=max(1, int(api.shutdown_seconds)),
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self._switch_interval: float | None = None
        self._db = host.db
        self._stop_checkpoints = threading.Event()
        self._checkpoints: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with ``port: 0``)."""
        for server in self._server.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return self.api.port

    @property
    def url(self) -> str:
        return f"http://{self.api.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; returns once the socket listens (raises :class:`ServerError`)."""
        # A request thread gives the GIL up around each SQLite call and its fsync, then
        # waits for the thread running the detectors to hand it back, up to the switch
        # interval each time (5 ms by default): 1 ms keeps that wait out of the latency.
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_interval, SWITCH_INTERVAL))
        self._thread = threading.Thread(target=self._server.run, name="driftloop-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise ServerError(
                    f"the API could not listen on {self.api.host}:{self.api.port} "
                    "(port in use or address unavailable)"
                )
            if time.monotonic() > deadline:
                raise ServerError(f"the API did not start within {timeout:.0f} s")
            time.sleep(0.02)
        self._stop_checkpoints.clear()
        self._checkpoints = threading.Thread(
            target=self._checkpoint, name="driftloop-checkpoint", daemon=True
        )
        self._checkpoints.start()
        log.info("API listening on %s", self.url)

    def _checkpoint(self) -> None:
        """Checkpoint the WAL every :data:`CHECKPOINT_SECONDS` so that no request's commit
        has to (each would copy megabytes into the database file and fsync it)."""
        while not self._stop_checkpoints.wait(CHECKPOINT_SECONDS):
            try:
                self._db.checkpoint()
            except Exception as err:  # a busy or failing disk: the commits' own checkpoints remain
                log.warning("background WAL checkpoint failed: %s", err)

    def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (``shutdown_seconds`` at most)."""
        if self._thread is None:
            return
        self._stop_checkpoints.set()
        if self._checkpoints is not None:
            self._checkpoints.join(10)
        self._server.should_exit = True
        self._thread.join(self.api.shutdown_seconds + 2)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(2)
        self._thread = None
        if self._switch_interval is not None:
            sys.setswitchinterval(self._switch_interval)


def serve_review(cfg: DriftloopConfig, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve the read-only review page (``/ui``) over a state, without running the loop:
    for looking at a finished run (``driftloop serve``). Blocks until Ctrl-C."""
    from types import SimpleNamespace

    from fastapi import FastAPI

    from runtime.service.ui import ui_router
    from runtime.store.db import Database
    from runtime.store.events import EventLog
    from runtime.store.versions import Registry

    db = Database.for_state_dir(cfg.state_dir, cfg.database_url)
    events = EventLog(db)
    state = SimpleNamespace(
        cfg=cfg, db=db, events=events, registry=Registry(db, cfg.state_dir / "models", events)
    )
    app = FastAPI(title="driftloop review", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(ui_router(state, token=None))  # read-only: no token, no actions
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:  # bound here, so a port in use or out of range is one line, not a URL that fails
        if not 0 <= port <= 65535:
            raise OSError(f"port must be 0-65535, not {port}")
        sock = socket.create_server((host, port), family=family)
    except OSError as err:
        db.dispose()
        raise ServerError(f"cannot serve the review page on {host}:{port}: {err}") from None
    bound = sock.getsockname()[1]
    print(f"review page: http://{host}:{bound}/ui  (Ctrl-C to stop)", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    db.dispose()
