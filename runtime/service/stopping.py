"""Stopping on SIGTERM or SIGINT, within a deadline.

The first signal asks for a graceful stop (the daemon's stop event: the API stops
accepting, the running retrain is cancelled, the state is saved). A stop that has not
finished :data:`STOP_SECONDS` later (v1 still training in the daemon's process, a webhook
still being delivered) ends the process at once, as ``kill -9`` would: the state is safe
against that (every acknowledged row is committed; a restart replays what the detectors
missed and re-runs an unfinished retrain), and ``on_force`` kills the children first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)
STOP_SECONDS = 3.0
"""How long a graceful stop may take after the signal (systemd's unit allows a few more)."""


class StopOnSignal:
    """While entered, SIGTERM and SIGINT set ``stop``; a stop past ``deadline`` s exits."""

    def __init__(
        self, stop: threading.Event, on_force: Callable[[], None], deadline: float = STOP_SECONDS
    ) -> None:
        self.stop = stop
        self.on_force = on_force
        self.deadline = deadline
        self._timer: threading.Timer | None = None
        self._old: dict[int, object] = {}

    def __enter__(self) -> StopOnSignal:
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def __exit__(self, *_: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for s, h in self._old.items():
            signal.signal(s, h)  # type: ignore[arg-type]

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.stop.set()
        if self._timer is None:
            self._timer = threading.Timer(self.deadline, self._force, args=(signum,))
            self._timer.daemon = True
            self._timer.start()

    def _force(self, signum: int) -> None:
        log.error(
            "not stopped %.0f s after %s: exiting now (the state is safe as after kill -9)",
            self.deadline,
            signal.Signals(signum).name,
        )
        with contextlib.suppress(Exception):
            self.on_force()
        os._exit(128 + signum)
