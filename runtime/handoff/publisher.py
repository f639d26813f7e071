"""The export publisher: a thread that keeps ``export.dir/current`` on the champion.

Every ``poll_seconds`` it reads the champion pointer; when it names a version that is
not published yet (a promotion, a rollback, made by the daemon, the CLI or the API) it
exports it (:func:`runtime.handoff.export.publish`), off the daemon's loop. An export
that fails is logged and tried again after ``retry_seconds`` (or when the champion
changes); ``current`` keeps naming the last good export meanwhile. Only the leader
publishes.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from typing import Any

from runtime.config import DriftloopConfig
from runtime.handoff.export import ExportError, current_version, publish, writable
from runtime.store.versions import Registry

__all__ = ["Publisher"]

log = logging.getLogger(__name__)


class Publisher:
    """Publish each new champion of ``registry`` to ``cfg.export`` until :meth:`stop`."""

    def __init__(
        self,
        cfg: DriftloopConfig,
        registry: Registry,
        *,
        is_leader: Callable[[], bool] = lambda: True,
        poll_seconds: float = 0.2,
        retry_seconds: float = 60.0,
    ) -> None:
        if cfg.export is None:
            raise ValueError("Publisher needs export: in the config")
        self.cfg = cfg
        self.settings = cfg.export
        self.registry = registry
        self.is_leader = is_leader
        self.poll_seconds = poll_seconds
        self.retry_seconds = retry_seconds
        self.published: str | None = None
        self.error: str | None = None
        self._failed: dict[str, float] = {}  # version -> when to try again
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Check the directory can be written (ExportError, one line), clear what a
        killed export left, and start the thread."""
        root = self.settings.dir
        writable(root)
        for stale in root.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        self._thread = threading.Thread(target=self._run, name="driftloop-export", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def status(self) -> dict[str, Any]:
        return {"current": current_version(self.settings.dir), "published": self.published,
                "error": self.error}

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:
                log.exception("export publisher step failed; retrying")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def step(self) -> str | None:
        """Publish the champion if it changed; returns the version published now."""
        if not self.is_leader():
            return None
        champion = self.registry.champion()
        if champion is None or champion == self.published:
            return None
        if time.monotonic() < self._failed.get(champion, 0.0):
            return None
        try:
            done = publish(self.cfg, self.registry, champion, self.settings)
        except ExportError as err:
            self.error = f"{champion}: {err}"
            self._failed[champion] = time.monotonic() + self.retry_seconds
            log.error("champion %s not exported (current stays %s): %s", champion,
                      current_version(self.settings.dir), err)
            return None
        self.published, self.error = champion, None
        self._failed.pop(champion, None)
        took = ", ".join(f"{f} {s:.2f} s" for f, s in done.seconds.items()) or "already there"
        log.info("champion %s published to %s (%s)", champion, done.dir, took)
        return champion
