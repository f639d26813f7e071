"""Each detector's statistic over time, kept for the review page's charts.

The event log holds the alarms; this holds what led up to them: for every detector, one
point per checked batch (the row, the watched signal's batch mean, the statistic, its
threshold, whether it alarmed, and the champion at the time). The history is bounded:
when a detector has ``max_points`` points, every other ordinary point is dropped and
only every second batch is recorded from then on, so the whole run stays in view at a
coarser step. Alarm points are never dropped.

The daemon saves the trace under the ``kv`` key :data:`TRACE_KEY` (plus ``:<instance>``
when several daemons share a database) together with its own state; readers take
:func:`read_traces`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, update

from runtime.store.db import Database, from_json, kv, to_json

__all__ = ["TRACE_KEY", "DetectorTrace", "Point", "read_traces", "write_trace"]

TRACE_KEY = "detector_trace"
TRACE_VERSION = 1


@dataclass(frozen=True)
class Point:
    """One checked batch of one detector."""

    row: int
    value: float | None
    """The batch mean of the watched signal (error rate, loss, a feature); None for a
    multi-feature detector."""
    statistic: float | None
    threshold: float | None
    drift: bool
    champion: str | None

    def to_list(self) -> list[Any]:
        return [
            self.row,
            self.value,
            self.statistic,
            self.threshold,
            int(self.drift),
            self.champion,
        ]

    @classmethod
    def from_list(cls, item: list[Any]) -> Point:
        row, value, statistic, threshold, drift, champion = item
        return cls(
            int(row),
            _finite(value),
            _finite(statistic),
            _finite(threshold),
            bool(drift),
            None if champion is None else str(champion),
        )


def _finite(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


@dataclass
class _Series:
    signal: str
    points: list[Point]
    stride: int = 1
    calls: int = 0


class DetectorTrace:
    """A bounded history of detector statistics.

    Examples
    --------
    >>> t = DetectorTrace(max_points=4)
    >>> for r in range(10):
    ...     t.record("adwin", "error", r, value=0.1, statistic=None, threshold=None,
    ...              drift=r == 7, champion="v1")
    >>> [p.row for p in t.points("adwin")]
    [0, 4, 7, 8]
    """

    def __init__(self, max_points: int = 2000) -> None:
        if max_points < 2:
            raise ValueError(f"max_points must be >= 2, got {max_points}")
        self.max_points = max_points
        self._series: dict[str, _Series] = {}

    def record(
        self,
        detector: str,
        signal: str,
        row: int,
        *,
        value: float | None,
        statistic: float | None,
        threshold: float | None,
        drift: bool,
        champion: str | None,
    ) -> None:
        """Add one checked batch (kept if it falls on the current stride or alarmed)."""
        s = self._series.setdefault(detector, _Series(signal, []))
        s.calls += 1
        if not drift and (s.calls - 1) % s.stride:
            return
        s.points.append(
            Point(
                int(row),
                _finite(value),
                _finite(statistic),
                _finite(threshold),
                bool(drift),
                champion,
            )
        )
        if len(s.points) > self.max_points:
            s.points = [p for i, p in enumerate(s.points) if p.drift or i % 2 == 0]
            s.stride *= 2

    def detectors(self) -> list[str]:
        return list(self._series)

    def signal(self, detector: str) -> str:
        return self._series[detector].signal

    def points(self, detector: str) -> list[Point]:
        s = self._series.get(detector)
        return list(s.points) if s else []

    def state(self) -> dict[str, Any]:
        """JSON-able form, ``{"version": 1, "detectors": {...}}``."""
        return {
            "version": TRACE_VERSION,
            "max_points": self.max_points,
            "detectors": {
                name: {
                    "signal": s.signal,
                    "stride": s.stride,
                    "calls": s.calls,
                    "points": [p.to_list() for p in s.points],
                }
                for name, s in self._series.items()
            },
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> DetectorTrace:
        """The trace :meth:`state` wrote; ValueError for an unknown version."""
        if not isinstance(state, dict) or state.get("version") != TRACE_VERSION:
            raise ValueError("not a detector trace of a known version")
        out = cls(int(state.get("max_points", 2000)))
        for name, s in state.get("detectors", {}).items():
            out._series[str(name)] = _Series(
                str(s["signal"]),
                [Point.from_list(p) for p in s["points"]],
                int(s.get("stride", 1)),
                int(s.get("calls", 0)),
            )
        return out


def write_trace(conn: Connection, key: str, trace: DetectorTrace) -> None:
    """Store ``trace`` under ``key`` inside the caller's transaction."""
    blob = to_json(trace.state())
    if conn.execute(select(kv.c.key).where(kv.c.key == key)).first() is None:
        conn.execute(kv.insert(), [{"key": key, "value": blob}])
    else:
        conn.execute(update(kv).where(kv.c.key == key).values(value=blob))


def load_trace(db: Database, key: str) -> DetectorTrace:
    """The trace stored under ``key``; an empty one if there is none (or it is unreadable)."""
    with db.connect() as conn:
        row = conn.execute(select(kv.c.value).where(kv.c.key == key)).first()
    if row is None:
        return DetectorTrace()
    try:
        return DetectorTrace.from_state(from_json(row[0]))
    except (ValueError, KeyError, TypeError):
        return DetectorTrace()


def read_traces(db: Database) -> dict[str, tuple[str, list[Point]]]:
    """Every stored detector's ``(signal, points)``; several daemons' traces are merged
    (points in row order)."""
    with db.connect() as conn:
        found = conn.execute(
            select(kv.c.value)
            .where((kv.c.key == TRACE_KEY) | kv.c.key.startswith(f"{TRACE_KEY}:"))
            .order_by(kv.c.key)
        ).all()
    merged: dict[str, tuple[str, list[Point]]] = {}
    for (blob,) in found:
        try:
            trace = DetectorTrace.from_state(from_json(blob))
        except (ValueError, KeyError, TypeError):
            continue
        for name in trace.detectors():
            _, pts = merged.setdefault(name, (trace.signal(name), []))
            pts.extend(trace.points(name))
    for _, pts in merged.values():
        pts.sort(key=lambda p: p.row)
    return merged
