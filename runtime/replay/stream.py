"""A logged stream as the replay feeds it: rows in order, labels arriving later.

The files (CSV or Parquet, the schema's columns) are read and concatenated in the order
given (labels are class values, or with ``task: regression`` numeric targets); rows
without the id column get ``r<position>``. The first ``bootstrap`` rows come labelled
(v1's history). After them the stream is cut into steps of ``batch_rows`` rows;
with a label delay of ``d`` rows, the label of stream row ``i`` is known from position
``i + d`` on: each step delivers its rows unlabelled, then the labels that became due by
its end, as the daemon receives late labels (a labels-only batch joined by row id).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from runtime.config import SchemaConfig
from runtime.intake.sources import Batch
from runtime.monitoring.backtest import read_table

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Step:
    """One step of the replay: stream positions ``[start, stop)`` arrive, then labels."""

    start: int
    stop: int
    rows: Batch
    labels: Batch | None  # labels-only batch (id and label columns), None if none came due


class LoggedStream:
    """The rows of the files, with their true labels kept for scoring."""

    def __init__(self, frame: pd.DataFrame, schema: SchemaConfig) -> None:
        missing = [c for c in [*schema.inputs, schema.label] if c not in frame.columns]
        if missing:
            raise ValueError(f"the data has no column(s) {', '.join(map(repr, missing))}")
        frame = frame.reset_index(drop=True)
        if schema.id_column not in frame.columns:
            frame[schema.id_column] = [f"r{i}" for i in range(len(frame))]
        frame[schema.id_column] = frame[schema.id_column].astype(str)
        self.schema = schema
        ts = schema.timestamp_column
        extra = [ts] if ts is not None and ts in frame.columns else []
        self.frame = frame[[schema.id_column, *schema.inputs, *extra, schema.label]]
        labels = pd.to_numeric(self.frame[schema.label], errors="coerce")
        if schema.numeric_label:  # regression targets: a row without one is not scored
            self.y: F64 | I64 = labels.to_numpy(dtype=np.float64)
            return
        if schema.string_classes:  # class names: scored as the positions they are stored as
            names = dict(zip(map(str, schema.classes), schema.class_values, strict=True))
            labels = self.frame[schema.label].astype(str).str.strip().map(names)
        unknown = ~labels.isin(schema.class_values)
        if unknown.any():
            first = self.frame[schema.label][unknown].iloc[0]
            raise ValueError(
                f"{int(unknown.sum())} row(s) have a label outside the schema's classes "
                f"{list(schema.classes)} (e.g. {first!r})"
            )
        self.y = labels.to_numpy(dtype=np.int64)

    @classmethod
    def read(cls, paths: Sequence[Path], schema: SchemaConfig, limit: int | None = None
             ) -> LoggedStream:
        if not paths:
            raise ValueError("no data files given")
        frame = pd.concat([read_table(Path(p)) for p in paths], ignore_index=True)
        if limit is not None:
            frame = frame.iloc[:limit]
        return cls(frame, schema)

    def __len__(self) -> int:
        return len(self.frame)

    def timestamps(self) -> pd.Series | None:
        """The schema's ``timestamp_column`` (the stream's clock), or None without one."""
        ts = self.schema.timestamp_column
        if ts is None or ts not in self.frame.columns:
            return None
        return self.frame[ts]

    def bootstrap_batch(self, n: int) -> Batch:
        if n >= len(self):
            raise ValueError(
                f"the stream has {len(self)} rows, not more than bootstrap.rows ({n}): "
                "nothing would be left to replay"
            )
        return Batch(origin="replay:bootstrap", frame=self.frame.iloc[:n].copy())

    def steps(self, start: int, batch_rows: int, label_delay: int) -> Iterator[Step]:
        """The steps after the first ``start`` rows (the bootstrap), in order."""
        s = self.schema
        labelled_upto = start  # labels of positions < labelled_upto are delivered
        for a in range(start, len(self), batch_rows):
            b = min(a + batch_rows, len(self))
            rows = self.frame.iloc[a:b].copy()
            if label_delay > 0:
                rows[s.label] = np.nan
            due = b - label_delay if label_delay > 0 else labelled_upto
            labels = None
            if due > labelled_upto:
                part = self.frame.iloc[labelled_upto:due][[s.id_column, s.label]].copy()
                labels = Batch(origin=f"replay:labels@{b}", frame=part)
                labelled_upto = due
            yield Step(a, b, Batch(origin=f"replay:rows@{a}", frame=rows, first_row=a + 1),
                       labels)
