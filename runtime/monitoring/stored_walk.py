"""The rows and late labels stored after a point, read back in the order they were stored.

A crash replay (:mod:`runtime.monitoring.recovery`) feeds them to the restored detectors;
what was stored after a retrain was requested is held for the champion the gate leaves
(:mod:`runtime.monitoring.backlog`), as the daemon holds it while running. Both walk the
same order: each late label after the rows stored before it was joined, before any newer
row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from runtime.intake.row_append import Accepted
from runtime.store.db import Database
from runtime.store.rows import late_labels_after, rows_after

REPLAY_ROWS = 1000  # rows (or late labels) read back per step
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Step:
    """Stored rows (``late`` False) or the rows whose labels were joined late (``late``
    True, fed with those labels); ``label_seq``: the last late label handled after it."""

    seqs: I64
    x: F64
    y: npt.NDArray[np.int64] | F64
    late: bool
    label_seq: int

    def accepted(self, n_features: int) -> Accepted:
        """The step as the ingest would have accepted it (what the backlog holds)."""
        none = np.zeros(0, dtype=np.int64)
        if self.late:
            return Accepted(seqs=none, x=np.zeros((0, n_features)), y=none, row_ids=[],
                            labels_joined=self.seqs, label_seq=self.label_seq)
        return Accepted(seqs=self.seqs, x=self.x, y=self.y, row_ids=[],  # type: ignore[arg-type]
                        labels_joined=none, label_seq=self.label_seq)


class StoredWalk:
    """Walks forward from row :attr:`rows_at` and late label :attr:`labels_at`."""

    def __init__(
        self, db: Database, n_features: int, rows_at: int, labels_at: int, numeric: bool = False
    ) -> None:
        self.db = db
        self.n_features = n_features
        self.rows_at = rows_at
        self.labels_at = labels_at
        self.numeric = numeric

    def steps(self, until: Callable[[], int | None] = lambda: None) -> Iterator[Step]:
        """The next steps, up to the end of what is stored or, while ``until()`` names a
        row, up to that row (asked before each step: a step may set it)."""
        while True:
            stop = until()
            if stop is not None and self.rows_at >= stop:
                return
            late = late_labels_after(self.db, self.n_features, self.labels_at, REPLAY_ROWS,
                                     numeric=self.numeric)
            due = late.after_seq <= self.rows_at  # joined before the next row was stored
            k = len(due) if due.all() else int(np.argmin(due))
            if k:
                self.labels_at = int(late.seq[k - 1])
                yield Step(late.rows[:k], late.x[:k], late.y[:k], True, self.labels_at)
                continue
            upto = int(late.after_seq[0]) if len(due) else None
            if stop is not None:
                upto = stop if upto is None else min(upto, stop)
            seqs, x, y = rows_after(self.db, self.n_features, self.rows_at, REPLAY_ROWS, upto,
                                    numeric=self.numeric)
            if len(seqs):
                self.rows_at = int(seqs[-1])
                yield Step(seqs, x, y, False, self.labels_at)
            elif upto is None:
                return
            else:  # no row up to the label (it is due) or to ``stop``
                self.rows_at = upto
