"""The replay's simulated time, which the ``schedule`` and ``max_age`` triggers read.

A row's time is its value in the schema's ``timestamp_column`` when the stream has one;
otherwise rows are ``row_seconds`` apart from :data:`EPOCH`. The clock stands at the last
row that arrived, so "every 12h" means 12 hours of the stream's time, whatever the replay
costs in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
import pandas as pd

from runtime.monitoring.triggers import NextFire

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
NextFireFactory = Callable[[float | None, str | None, datetime], NextFire]
"""``(every seconds, cron, anchor) -> next_fire``, as :mod:`runtime.service.scheduler` builds."""


class StreamClock:
    """The time at each stream position, and "now" (the position last :meth:`advance`\\ d to)."""

    def __init__(self, n: int, timestamps: pd.Series | None = None,
                 row_seconds: float = 1.0) -> None:
        if row_seconds <= 0:
            raise ValueError(f"row seconds must be positive, got {row_seconds}")
        self.row_seconds = row_seconds
        self._times: npt.NDArray[np.int64] | None = None  # ns since the epoch, per position
        if timestamps is not None:
            unit = "s" if pd.api.types.is_numeric_dtype(timestamps) else None  # epoch s
            ts = pd.to_datetime(timestamps, utc=True, errors="coerce", unit=unit)
            if ts.isna().any():
                raise ValueError("the timestamp column has missing or unreadable values")
            self._times = ts.to_numpy(dtype="datetime64[ns]").astype(np.int64)
        self.n = n
        self.position = 0

    def at(self, position: int) -> datetime:
        position = min(max(position, 0), self.n - 1)
        if self._times is None:
            return EPOCH + timedelta(seconds=position * self.row_seconds)
        return datetime.fromtimestamp(int(self._times[position]) / 1e9, UTC)

    def advance(self, position: int) -> None:
        self.position = position

    def now(self) -> datetime:
        return self.at(self.position)


def interval_next_fire(every: float | None, cron: str | None, anchor: datetime) -> NextFire:
    """An interval schedule of ``every`` seconds counted from ``anchor`` (the replay's
    default; a cron line needs the scheduler's, which ``driftloop replay`` passes in)."""
    if every is None:
        raise ValueError("policy.triggers.schedule.cron needs the scheduler: run it through "
                         "`driftloop replay` (or use schedule.every)")
    step = timedelta(seconds=every)

    def after(now: datetime) -> datetime:
        k = max(0, math.floor((now - anchor) / step)) + 1
        return anchor + k * step

    return after
