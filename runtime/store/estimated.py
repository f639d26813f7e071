"""The champion's accuracy estimated without labels, beside the realized one.

For every row it monitors the daemon records the champion's calibrated top-class
probability (:func:`record`). Where the calibration holds, that probability is the chance
the prediction is right, so its mean over a window of rows is the expected accuracy
(confidence-based performance estimation, CBPE) -- no label needed. :func:`estimated` is
the one place that estimate over a recent window is read: status, the API, the metrics
and the review page call it, as they call :func:`runtime.store.served.realized`.

The band: the rows' own Bernoulli spread, ``z * sqrt(sum p(1-p)) / n``, widened by the
calibration's own error on the golden set it was fitted on (``meta["calibration"]
["error"]``). Where labels catch up, :func:`versus` compares the estimate with the
realized accuracy on exactly the same labelled rows: the two agree under a covariate
shift; a realized value outside the band says the relation of label to input changed
(concept drift), which no label-free estimate can see.

The expected macro-F1 needs every class's probability, not only the top one: those are
recorded too (:func:`record_probabilities`) and :func:`expected_macro_f1` reads the
expected confusion matrix from them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, func, select

from runtime.store.db import Database, from_json, rows, served_confidence, to_json
from runtime.store.db import served_probabilities as probabilities
from runtime.store.served import DEFAULT_WINDOW, Point, realized

BAND_Z = 1.96
"""The band's width in standard errors (about 95 %)."""
conf = served_confidence


@dataclass(frozen=True)
class Estimated:
    """The expected accuracy over a window of monitored rows, with its band.

    ``value`` is None when the window holds no row.
    """

    value: float | None
    low: float | None
    high: float | None
    rows: int
    window: int
    first_row: int | None = None
    last_row: int | None = None

    def to_dict(self) -> dict[str, object]:
        return {"value": self.value, "low": self.low, "high": self.high, "rows": self.rows,
                "window": self.window, "first_row": self.first_row, "last_row": self.last_row}


def band(mean: float, spread: float, n: int, error: float, z: float) -> tuple[float, float]:
    """The band around ``mean`` of ``n`` rows whose ``sum p(1-p)`` is ``spread``."""
    half = z * math.sqrt(max(spread, 0.0)) / max(n, 1) + error
    return max(0.0, mean - half), min(1.0, mean + half)


def calibration_error(meta: Mapping[str, Any]) -> float:
    """The calibration's own error recorded with a version (0 before calibrations)."""
    cal = meta.get("calibration") or {}
    return float(cal.get("error", 0.0))


def expected_macro_f1(probs: npt.NDArray[np.float64]) -> float:
    """Macro-F1 expected from calibrated class probabilities ``[n, k]`` (CBPE): for each
    class ``c``, the expected true positives are the rows predicted ``c`` weighted by
    ``p_c``, the false positives the same rows weighted by ``1 - p_c``, the false negatives
    the rows predicted otherwise weighted by ``p_c``. As the realized macro-F1 counts only
    the classes predicted or present, a class enters the mean where it is predicted or
    expected to be present (its probabilities sum to half a row or more); otherwise the
    stray mass every softmax gives an absent class would count it as an F1 of 0."""
    n = len(probs)
    pred = probs.argmax(axis=1)
    chosen = np.zeros_like(probs)
    chosen[np.arange(n), pred] = 1.0
    tp = (chosen * probs).sum(axis=0)
    fp = (chosen * (1.0 - probs)).sum(axis=0)
    fn = ((1.0 - chosen) * probs).sum(axis=0)
    denom = 2 * tp + fp + fn
    present = ((chosen.sum(axis=0) > 0) | (probs.sum(axis=0) >= 0.5)) & (denom > 1e-12)
    if not present.any():
        return 0.0
    return float((2 * tp[present] / denom[present]).mean())


def record_probabilities(
    conn: Connection, seqs: npt.NDArray[np.int64], probs: npt.NDArray[np.float64],
    version: str,
) -> int:
    """Record ``version``'s calibrated class probabilities ``[n, k]`` for the rows
    ``seqs`` (a row that has them keeps them). Returns how many were recorded."""
    if not len(seqs):
        return 0
    lo, hi = int(seqs.min()), int(seqs.max())
    have = set(conn.execute(select(probabilities.c.row_seq).where(
        probabilities.c.row_seq >= lo, probabilities.c.row_seq <= hi)).scalars())
    todo = [{"row_seq": int(s), "probs": to_json([round(v, 6) for v in p]),
             "version": version}
            for s, p in zip(seqs.tolist(), probs.tolist(), strict=True) if int(s) not in have]
    if todo:
        conn.execute(probabilities.insert(), todo)
    return len(todo)


def macro_f1(
    db: Database, window: int = DEFAULT_WINDOW, version: str | None = None
) -> float | None:
    """The expected macro-F1 over the last ``window`` rows whose probabilities were
    recorded (served by ``version`` if given); None without such a row."""
    q = select(probabilities.c.probs)
    if version is not None:
        q = q.where(probabilities.c.version == version)
    with db.connect() as c:
        got = [from_json(p) for p in c.execute(
            q.order_by(probabilities.c.row_seq.desc()).limit(window)).scalars()]
    if not got:
        return None
    k = len(got[0])  # the newest rows' classes (a version's are fixed)
    probs = np.asarray([p for p in got if len(p) == k], dtype=np.float64)
    return expected_macro_f1(probs) if k >= 2 else None


def record(
    conn: Connection, seqs: npt.NDArray[np.int64], confidence: npt.NDArray[np.float64],
    version: str,
) -> int:
    """Record ``version``'s calibrated confidence for the rows ``seqs``; a row that has one
    keeps it (as :func:`runtime.store.served.record`). Returns how many were recorded."""
    if not len(seqs):
        return 0
    lo, hi = int(seqs.min()), int(seqs.max())
    have = set(conn.execute(
        select(conf.c.row_seq).where(conf.c.row_seq >= lo, conf.c.row_seq <= hi)).scalars())
    todo = [{"row_seq": int(s), "confidence": float(c), "version": version}
            for s, c in zip(seqs.tolist(), confidence.tolist(), strict=True)
            if int(s) not in have]
    if todo:
        conn.execute(conf.insert(), todo)
    return len(todo)


def estimated(
    db: Database,
    window: int = DEFAULT_WINDOW,
    version: str | None = None,
    *,
    error: float = 0.0,
    z: float = BAND_Z,
    labelled: bool = False,
    since: int | None = None,
    upto: int | None = None,
) -> Estimated:
    """The expected accuracy over the last ``window`` monitored rows (served by
    ``version`` if given; ``labelled``: only rows whose label is known), from row
    ``since`` and up to row ``upto`` if given."""
    if window < 1:
        raise ValueError(f"window must be at least 1 row, got {window}")
    q = select(conf.c.confidence.label("c"), conf.c.row_seq.label("seq"))
    if labelled:
        q = q.select_from(conf.join(rows, rows.c.seq == conf.c.row_seq)).where(
            rows.c.label.is_not(None))
    if version is not None:
        q = q.where(conf.c.version == version)
    if since is not None:
        q = q.where(conf.c.row_seq >= since)
    if upto is not None:
        q = q.where(conf.c.row_seq <= upto)
    sub = q.order_by(conf.c.row_seq.desc()).limit(window).subquery()
    agg = select(func.avg(sub.c.c), func.sum(sub.c.c * (1.0 - sub.c.c)), func.count(),
                 func.min(sub.c.seq), func.max(sub.c.seq))
    with db.connect() as c:
        mean, spread, n, first, last = c.execute(agg).one()
    if mean is None:
        return Estimated(None, None, None, 0, window)
    low, high = band(float(mean), float(spread or 0.0), int(n), error, z)
    return Estimated(float(mean), low, high, int(n), window, int(first), int(last))


def versus(
    db: Database, version: str, window: int = DEFAULT_WINDOW, *, error: float = 0.0,
    z: float = BAND_Z,
) -> dict[str, object] | None:
    """The estimate on the rows of ``version``'s realized window (its last ``window``
    labelled served rows) beside the realized accuracy there: their gap, and whether
    the realized value fell outside the band (``diverged``: the sign of concept drift).
    None before a labelled row was served."""
    real = realized(db, window, version=version)
    if real.value is None or real.first_row is None:
        return None
    est = estimated(db, window, version, error=error, z=z, labelled=True,
                    since=real.first_row, upto=real.last_row)
    if est.value is None or est.low is None or est.high is None:
        return None
    return {"estimated": est.to_dict(), "realized": real.to_dict(),
            "gap": round(est.value - real.value, 6),
            "diverged": not est.low <= real.value <= est.high}


def estimated_summary(
    db: Database, champion: str | None, meta: Mapping[str, Any] | None,
    window: int = DEFAULT_WINDOW, z: float = BAND_Z,
) -> dict[str, object] | None:
    """The champion's estimate over its last ``window`` monitored rows (and its expected
    macro-F1 there, :func:`macro_f1`), and where labels arrived its :func:`versus`
    comparison (status, the API, the metrics); None without a champion."""
    if champion is None:
        return None
    error = calibration_error(meta or {})
    est = estimated(db, window, champion, error=error, z=z)
    f1 = macro_f1(db, window, champion)
    return {**est.to_dict(), "macro_f1": None if f1 is None else round(f1, 6),
            "version": champion, "calibration_error": error,
            "versus_realized": versus(db, champion, window, error=error, z=z)}


def estimated_series(db: Database, points: int = 200) -> list[Point]:
    """The expected accuracy over the stream, as
    :func:`runtime.store.served.realized_series` cuts it (labels not needed)."""
    with db.connect() as c:
        lo, hi = c.execute(select(func.min(conf.c.row_seq), func.max(conf.c.row_seq))).one()
    if lo is None:
        return []
    width = max(1, -(-(int(hi) - int(lo) + 1) // max(1, points)))
    bucket = (conf.c.row_seq - int(lo)) // width
    q = (select(func.min(conf.c.row_seq), func.max(conf.c.row_seq), conf.c.version,
                func.avg(conf.c.confidence), func.count())
         .group_by(bucket, conf.c.version).order_by(func.min(conf.c.row_seq)))
    with db.connect() as c:
        got = c.execute(q).all()
    return [Point(int(a), int(b), str(v), float(s), int(n)) for a, b, v, s, n in got]

