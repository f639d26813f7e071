"""Join late labels to the rows stored earlier, by row id.

A label for a row that already has one is ignored (the first label stands); a label for a
row id never ingested is refused with its reason. Each joined label is numbered in
``late_labels`` in the order the daemon feeds them, so a restart replays them once.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import Connection, bindparam, func, insert, select, update

from runtime.store.db import late_labels, rows


def join_labels(
    conn: Connection, clean: pd.DataFrame, reasons: dict[int, str], now: str
) -> tuple[npt.NDArray[np.int64], int]:
    """Join labels to their stored rows (a row that has a label keeps it); returns the
    seqs of the rows that got one and the number of the last in ``late_labels``."""
    ids = clean["__id"].tolist()
    known: dict[str, tuple[int, int | None]] = {}
    for chunk in range(0, len(ids), 500):
        part = ids[chunk : chunk + 500]
        for seq, rid, lab in conn.execute(
            select(rows.c.seq, rows.c.row_id, rows.c.label).where(rows.c.row_id.in_(part))
        ):
            known[rid] = (int(seq), lab)
    positions = clean.index.to_list()
    todo = []
    for pos, rid, lab in zip(positions, ids, clean["__label"].tolist(), strict=True):
        if rid not in known:
            reasons[int(pos)] = f"unknown row id {rid!r} (label arrived for a row never ingested)"
        elif known[rid][1] is None:
            value = lab if isinstance(lab, float) else int(lab)  # a regression target
            todo.append({"rid": rid, "lab": value, "now": now})
    if not todo:
        return np.zeros(0, dtype=np.int64), 0
    conn.execute(
        update(rows)
        .where(rows.c.row_id == bindparam("rid"), rows.c.label.is_(None))
        .values(label=bindparam("lab"), labeled_at=bindparam("now")),
        todo,
    )
    seqs = sorted(known[t["rid"]][0] for t in todo)  # the order the daemon feeds them in
    after = conn.execute(select(func.max(rows.c.seq))).scalar_one()
    numbers = conn.execute(
        insert(late_labels).returning(late_labels.c.seq),
        [{"row_seq": seq, "after_seq": after} for seq in seqs],
    ).scalars()
    return np.array(seqs, dtype=np.int64), max(numbers)
