"""Periodic work, through APScheduler 3.x (the one module that imports it)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from runtime.store.disk import storage_problem

log = logging.getLogger(__name__)
WAKE_SECONDS = 0.1
"""How often the main thread wakes while the jobs run (so that signal handlers run)."""


class _NoSkipNoise(logging.Filter):
    """A step that outlasts its interval is normal (a bootstrap, a gate): APScheduler's
    'skipped: maximum number of running instances' would flood the log on every tick."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances" not in record.getMessage()


logging.getLogger("apscheduler.scheduler").addFilter(_NoSkipNoise())


def _storage_quiet(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn``, except that a run failing on a full disk or read-only storage ends
    quietly: the database logged that once (runtime/store/disk.py), and the next run
    after space returns carries on; any other failure is APScheduler's to log."""

    def run() -> object:
        try:
            return fn()
        except Exception as err:
            if storage_problem(err) is None:
                raise
            log.debug("%s: storage refused a write: %s", getattr(fn, "__name__", fn), err)
            return None

    return run


def next_fire(
    every: float | None, cron: str | None, anchor: datetime
) -> Callable[[datetime], datetime]:
    """``after -> the first time the schedule fires strictly after it``: an interval of
    ``every`` seconds counted from ``anchor``, or a crontab line (UTC)."""
    trigger = (
        CronTrigger.from_crontab(cron, timezone="UTC") if cron is not None
        else IntervalTrigger(seconds=every, start_date=anchor, timezone="UTC")
    )

    def after(now: datetime) -> datetime:
        fire: datetime | None = trigger.get_next_fire_time(None, now + timedelta(microseconds=1))
        assert fire is not None  # neither kind ends
        return fire

    return after


class Scheduler:
    """Runs callables at fixed intervals in a background thread, never overlapping."""

    def __init__(self) -> None:
        self._s = BackgroundScheduler(timezone="UTC")

    def every(self, seconds: float, fn: Callable[[], object], name: str) -> None:
        self._s.add_job(
            _storage_quiet(fn),
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

    def run_until(self, stop: threading.Event) -> None:
        """Run the jobs until ``stop`` is set, then wait for a running one to end.

        The wait wakes every :data:`WAKE_SECONDS`: a signal the kernel delivers to another
        thread does not interrupt the main thread's wait, and Python runs its handler (the
        one that sets ``stop``) only once the main thread runs again.
        """
        self.start()
        try:
            while not stop.wait(WAKE_SECONDS):
                pass
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        if self._s.running:
            self._s.shutdown(wait=True)
