"""The demo's synthetic stream: river's Agrawal generator, segment by segment.

This is the one runtime module that imports river, and only for its data generators
(detection goes through ``detectors/``'s river adapter). Each segment draws rows from one
Agrawal concept, restricted to a region of feature space (rejection sampling), with
optional label noise, so drift points are known in advance.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd
from river.datasets import synth

from runtime.config import SchemaConfig
from runtime.intake.settings import Segment, SyntheticSourceConfig
from runtime.intake.sources import Batch

AGRAWAL_FEATURES = (
    "salary",
    "commission",
    "age",
    "elevel",
    "car",
    "zipcode",
    "hvalue",
    "hyears",
    "loan",
)


def _inside(x: dict[str, float], where: dict[str, tuple[float, float]]) -> bool:
    return all(lo <= x[k] < hi for k, (lo, hi) in where.items())


def segment_rows(
    segment: Segment, seed: int, n: int | None = None, *, clean: bool = False
) -> Iterator[tuple[list[float], int]]:
    """Yield ``(features, label)`` for one segment; ``n`` defaults to ``segment.rows``.

    ``clean=True`` skips the label noise (evaluation samples).
    """
    unknown = set(segment.where) - set(AGRAWAL_FEATURES)
    if unknown:
        raise ValueError(f"segment 'where' names unknown feature(s): {', '.join(sorted(unknown))}")
    gen = synth.Agrawal(classification_function=segment.function, seed=seed)
    noise = np.random.default_rng(seed + 1_000_003)
    want = segment.rows if n is None else n
    made = 0
    for x, y in gen:
        if not _inside(x, segment.where):
            continue
        label = int(y)
        if not clean and segment.label_noise > 0 and noise.random() < segment.label_noise:
            label = 1 - label
        yield [float(x[f]) for f in AGRAWAL_FEATURES], label
        made += 1
        if made >= want:
            return


def stream(segments: Sequence[Segment], seed: int) -> Iterator[tuple[list[float], int, int]]:
    """The whole stream: ``(features, label, segment index)`` in order."""
    for i, seg in enumerate(segments):
        for x, y in segment_rows(seg, seed=seed * 1000 + i):
            yield x, y, i


def drift_points(segments: Sequence[Segment]) -> list[int]:
    """Row offsets (0-based) where a new segment begins."""
    points, total = [], 0
    for seg in segments[:-1]:
        total += seg.rows
        points.append(total)
    return points


def evaluation_sample(
    segments: Sequence[Segment], index: int, n: int, seed: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """A fresh, clean-labelled sample of segment ``index`` (never seen by the daemon)."""
    rows = list(segment_rows(segments[index], seed=seed * 1000 + index + 500_000, n=n, clean=True))
    x = np.asarray([r[0] for r in rows], dtype=np.float64)
    y = np.asarray([r[1] for r in rows], dtype=np.int64)
    return x, y


class SyntheticSource:
    """The demo stream, replayed from its seed; ``cursor`` rows are skipped on start."""

    name = "synthetic"

    def __init__(self, cfg: SyntheticSourceConfig, schema: SchemaConfig, cursor: int = 0) -> None:
        if list(schema.features) != list(AGRAWAL_FEATURES):
            raise ValueError(
                "the synthetic source produces Agrawal rows: schema.features must be "
                + ", ".join(AGRAWAL_FEATURES)
            )
        self.cfg = cfg
        self.schema = schema
        self._cursor = cursor
        self.blocks_on_retrain = cfg.block_on_retrain
        self.total = sum(s.rows for s in cfg.segments)
        self._it: Iterator[tuple[list[float], int, int]] = stream(cfg.segments, cfg.seed)
        for _ in range(cursor):
            next(self._it)

    def poll(self) -> Batch | None:
        rows = []
        for _ in range(self.cfg.batch_size):
            try:
                rows.append(next(self._it))
            except StopIteration:
                break
        if not rows:
            return None
        start = self._cursor
        self._cursor += len(rows)
        frame = pd.DataFrame([r[0] for r in rows], columns=list(self.schema.features))
        frame[self.schema.label] = [r[1] for r in rows]
        frame[self.schema.id_column] = [f"syn-{start + i}" for i in range(len(rows))]
        return Batch(origin="synthetic", frame=frame, first_row=start + 1)

    def exhausted(self) -> bool:
        return self._cursor >= self.total

    @property
    def cursor(self) -> int:
        return self._cursor

    def ack(self, batch: Batch) -> None:
        """The stream is replayed from its seed: nothing to acknowledge."""

    def close(self) -> None:
        """Holds no connection."""

    def lag(self) -> None:
        """No backlog to count here."""
        return None
