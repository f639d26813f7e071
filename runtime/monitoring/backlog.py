"""Rows stored while a retrain is pending or running, held back from the detectors.

After a retrain the detectors watch the version the gate leaves as champion, from the
last row the retrain was requested on. The rows stored meanwhile belong to that watch:
they are held here, batch by batch as they were stored, and fed to the detectors once the
gate has decided, to whichever version is champion then, until the next retrain is
requested (the feed stops at its rows again). So how fast rows arrive — a backlog dropped
at once or a stream arriving slowly — never decides what is retrained: both are fed the
same batches, in the same order, against the same champion.

Only the row numbers are held (8 bytes a row); the rows are read back from the store when
fed. A held row is not yet handled (:class:`~runtime.monitoring.recovery.Recovery`): a
daemon that dies with rows held feeds them again after its restart.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from runtime.intake.row_append import Accepted
from runtime.store.db import Database
from runtime.store.rows import Labels, rows_after

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Held:
    """One stored batch not yet fed: its rows and the late labels it joined."""

    seqs: I64
    labels_joined: I64
    label_seq: int


class Backlog:
    """The held batches, oldest first."""

    def __init__(self, db: Database, n_features: int, numeric: bool = False) -> None:
        """``numeric``: the labels are regression targets (NaN where unknown)."""
        self.db = db
        self.n_features = n_features
        self.numeric = numeric
        self.batches: deque[Held] = deque()
        self.rows = 0
        """How many rows are held: a count kept as batches come and go, so the API's
        thread reads it without walking the deque the daemon's thread changes."""

    def __len__(self) -> int:
        return len(self.batches)

    def hold(self, acc: Accepted) -> None:
        if acc.count or len(acc.labels_joined):
            self.batches.append(Held(acc.seqs.copy(), acc.labels_joined.copy(), acc.label_seq))
            self.rows += acc.count

    def clear(self) -> None:
        self.batches.clear()
        self.rows = 0

    def release(self, feed: Callable[[Accepted], None], stop: Callable[[], bool]) -> int:
        """Feed the held batches in order through ``feed`` until ``stop()`` (a retrain was
        requested); returns how many rows were fed."""
        n = 0
        while self.batches and not stop():
            held = self.batches.popleft()
            self.rows -= len(held.seqs)
            acc = self._read(held)
            feed(acc)
            n += acc.count
        return n

    def _read(self, held: Held) -> Accepted:
        """The batch as it was accepted: features from the store, the label where it
        came with the row (-1 where it came late: it is fed where it was joined)."""
        if not len(held.seqs):
            y: Labels = np.zeros(0, np.float64 if self.numeric else np.int64)
            seqs, x = held.seqs, np.zeros((0, self.n_features))
        else:
            lo, hi = int(held.seqs.min()), int(held.seqs.max())
            seqs, x, y = rows_after(self.db, self.n_features, lo - 1, hi - lo + 1, upto=hi,
                                    numeric=self.numeric)
            keep = np.isin(seqs, held.seqs)
            seqs, x, y = seqs[keep], x[keep], y[keep]
        return Accepted(seqs=seqs, x=x, y=y, row_ids=[], labels_joined=held.labels_joined,
                        label_seq=held.label_seq)
