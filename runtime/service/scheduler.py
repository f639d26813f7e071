"""Periodic work, through APScheduler 3.x (the one module that imports it)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler

log = logging.getLogger(__name__)


class _NoSkipNoise(logging.Filter):
    """A step that outlasts its interval is normal (a bootstrap, a gate): APScheduler's
    'skipped: maximum number of running instances' would flood the log on every tick."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances" not in record.getMessage()


logging.getLogger("apscheduler.scheduler").addFilter(_NoSkipNoise())


class Scheduler:
    """Runs callables at fixed intervals in a background thread, never overlapping."""

    def __init__(self) -> None:
        self._s = BackgroundScheduler(timezone="UTC")

    def every(self, seconds: float, fn: Callable[[], object], name: str) -> None:
        self._s.add_job(
            fn,
            "interval",
            seconds=seconds,
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )

    def start(self) -> None:
        self._s.start()

    def shutdown(self) -> None:
        if self._s.running:
            self._s.shutdown(wait=True)
