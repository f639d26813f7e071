"""A regression champion's MAE estimated without labels, beside the realized one.

For every row it monitors the daemon records the expected absolute error of the
champion's prediction, from the loss model fitted on its golden set when the version was
made (:mod:`strategies.loss_model`, direct loss estimation). Its mean over a window of
rows is the window's expected MAE, no label needed; where labels caught up,
:func:`estimated_mae` sets the realized MAE on exactly the same labelled rows beside it.

The band: how far the realized MAE of ``n`` rows strays from its expectation by chance,
``z * sqrt(K * sum e_i**2) / n`` for rows of expected absolute errors ``e_i``, where
``K = pi/2 - 1`` is ``Var|e| / (E|e|)**2`` of a normal error (a row's absolute error
varies about as much as its mean). A realized MAE outside it (``diverged``) says the
errors are not what the loss model learnt on the golden set: the relation of target to
input changed, which no label-free estimate can see coming.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, func, select

from runtime.store.db import Database, rows
from runtime.store.db import served_expected_error as expected
from runtime.store.estimated import BAND_Z
from runtime.store.served import DEFAULT_WINDOW, realized

ABS_ERROR_SPREAD = float(np.pi / 2 - 1)
"""``Var|e| / (E|e|)**2`` for a normal error ``e``: the band's per-row spread."""


def record(
    conn: Connection, seqs: npt.NDArray[np.int64], value: npt.NDArray[np.float64],
    version: str,
) -> int:
    """Record ``version``'s expected absolute error for the rows ``seqs`` (a row that has
    one keeps it; a NaN is not recorded). Returns how many were recorded."""
    if not len(seqs):
        return 0
    lo, hi = int(seqs.min()), int(seqs.max())
    have = set(conn.execute(
        select(expected.c.row_seq).where(expected.c.row_seq >= lo, expected.c.row_seq <= hi)
    ).scalars())
    todo = [{"row_seq": int(s), "value": float(v), "version": version}
            for s, v in zip(seqs.tolist(), value.tolist(), strict=True)
            if int(s) not in have and np.isfinite(v)]
    if todo:
        conn.execute(expected.insert(), todo)
    return len(todo)


def _mean(
    db: Database, window: int, version: str, *, labelled: bool = False,
    since: int | None = None, upto: int | None = None,
) -> tuple[float | None, int, int | None, int | None, float]:
    """Mean expected error over the window, its row count and span, and the band's
    half-width (:data:`BAND_Z` standard errors)."""
    q = select(expected.c.value.label("v"), expected.c.row_seq.label("seq")).where(
        expected.c.version == version)
    if labelled:
        q = q.select_from(expected.join(rows, rows.c.seq == expected.c.row_seq)).where(
            rows.c.label.is_not(None))
    if since is not None:
        q = q.where(expected.c.row_seq >= since)
    if upto is not None:
        q = q.where(expected.c.row_seq <= upto)
    sub = q.order_by(expected.c.row_seq.desc()).limit(window).subquery()
    agg = select(func.avg(sub.c.v), func.count(), func.min(sub.c.seq), func.max(sub.c.seq),
                 func.sum(sub.c.v * sub.c.v))
    with db.connect() as c:
        mean, n, first, last, squares = c.execute(agg).one()
    if mean is None:
        return None, 0, None, None, 0.0
    half = BAND_Z * float(np.sqrt(ABS_ERROR_SPREAD * float(squares))) / int(n)
    return float(mean), int(n), int(first), int(last), half


def estimated_mae(
    db: Database, champion: str | None, window: int = DEFAULT_WINDOW,
) -> dict[str, object] | None:
    """The champion's expected MAE over its last ``window`` monitored rows and, where
    labels arrived, the realized MAE on its last ``window`` labelled served rows beside
    the estimate on those same rows (status, the API, the metrics); None without a
    champion."""
    if champion is None:
        return None
    value, n, first, last, half = _mean(db, window, champion)
    out: dict[str, object] = {
        "value": value, "rows": n, "window": window, "first_row": first, "last_row": last,
        "low": None if value is None else max(0.0, value - half),
        "high": None if value is None else value + half,
        "version": champion, "versus_realized": None}
    real = realized(db, window, version=champion, metric="mae")
    if value is not None and real.value is not None and real.first_row is not None:
        est, m, _, _, h = _mean(db, window, champion, labelled=True, since=real.first_row,
                                upto=real.last_row)
        if est is not None:
            out["versus_realized"] = {
                "estimated": est, "rows": m, "realized": real.to_dict(),
                "gap": round(est - real.value, 6), "low": max(0.0, est - h), "high": est + h,
                "diverged": abs(real.value - est) > h}
    return out
