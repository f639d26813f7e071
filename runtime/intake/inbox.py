"""Rows written by another thread (the HTTP API) on their way to the detectors.

The API ingests a batch durably in its own thread, then hands the :class:`Accepted`
result here; the daemon's step drains the inbox and monitors those rows exactly as if
its source had produced them. The inbox is bounded in rows: when the detectors fall
behind, :meth:`Inbox.put` waits (back-pressure on the clients), and after ``timeout``
the batch is counted in ``dropped`` instead (its rows are stored; only monitoring
skips them).
"""

from __future__ import annotations

import logging
import threading
from collections import deque

import numpy as np

from runtime.intake.ingest import Accepted

log = logging.getLogger(__name__)


def _size(acc: Accepted) -> int:
    return acc.count + len(acc.labels_joined)


class Inbox:
    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self._items: deque[Accepted] = deque()
        self._rows = 0
        self._cond = threading.Condition()
        self.dropped = 0
        self.closed = False

    def put(self, acc: Accepted, timeout: float = 5.0) -> bool:
        """Queue ``acc``; False if the inbox stayed full for ``timeout`` s or is closed."""
        n = _size(acc)
        if n == 0:
            return True
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self.closed or self._rows == 0 or self._rows + n <= self.max_rows,
                timeout,
            )
            if not ok or self.closed:
                self.dropped += n
                log.warning("monitoring queue full: %d row(s) stored but not monitored", acc.count)
                return False
            self._items.append(acc)
            self._rows += n
            return True

    def drain(self) -> list[Accepted]:
        """Everything queued, oldest first."""
        with self._cond:
            out = list(self._items)
            self._items.clear()
            self._rows = 0
            self._cond.notify_all()
        return out

    def close(self) -> None:
        """Refuse further batches (the daemon is stopping)."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    @property
    def rows(self) -> int:
        return self._rows


def merge(batches: list[Accepted], n_features: int) -> Accepted:
    """One :class:`Accepted` holding every batch's rows in ``seq`` order (one model call
    and one detector update for many small HTTP batches)."""
    if len(batches) == 1:
        return batches[0]
    seqs = np.concatenate([b.seqs for b in batches]) if batches else np.zeros(0, np.int64)
    order = np.argsort(seqs, kind="stable")
    x = (
        np.concatenate([b.x for b in batches])
        if batches
        else np.zeros((0, n_features), dtype=np.float64)
    )
    y = np.concatenate([b.y for b in batches]) if batches else np.zeros(0, np.int64)
    ids = [r for b in batches for r in b.row_ids]
    joined = (
        np.sort(np.concatenate([b.labels_joined for b in batches]))
        if batches
        else np.zeros(0, np.int64)
    )
    return Accepted(
        seqs=seqs[order],
        x=x[order],
        y=y[order],
        row_ids=[ids[i] for i in order],
        rejected=sum(b.rejected for b in batches),
        duplicates=sum(b.duplicates for b in batches),
        labels_joined=joined,
        label_seq=max((b.label_seq for b in batches), default=0),
    )
