"""Refused rows: kept in the ``quarantine`` table with their reason, told in one event.

Each batch with refusals writes its bad rows (reason and raw text) and one
``ingest.rejected`` event with the counts by reason and a few examples, so an operator
sees what went wrong without reading the table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, select

from runtime.intake.sources import Batch
from runtime.store import events as ev
from runtime.store.db import quarantine
from runtime.store.events import EventLog

MAX_EXAMPLES = 5


def quarantine_rows(conn: Connection, batch: Batch, reasons: dict[int, str], now: str) -> None:
    """Store the refused rows of ``batch`` (positions ``reasons``) with their reasons;
    with ``batch.quarantine_once``, those not already stored (a redelivered message)."""
    entries = [
        {
            "ingested_at": now,
            "source": batch.origin,
            "row_number": batch.first_row + i,
            "reason": r,
            "raw": _raw(batch.frame, i),
        }
        for i, r in sorted(reasons.items())
    ]
    if batch.quarantine_once:
        entries = _not_stored(conn, batch.origin, entries)
    if entries:
        conn.execute(quarantine.insert(), entries)


def _not_stored(
    conn: Connection, origin: str, entries: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``entries`` less those quarantined before (same origin, raw text and reason)."""
    raws = sorted({e["raw"] for e in entries})
    seen = {
        (raw, reason)
        for raw, reason in conn.execute(
            select(quarantine.c.raw, quarantine.c.reason).where(
                quarantine.c.source == origin, quarantine.c.raw.in_(raws)
            )
        )
    }
    out = []
    for e in entries:
        key = (e["raw"], e["reason"])
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


def reject_event(
    events: EventLog,
    conn: Connection,
    batch: Batch,
    accepted: int,
    reasons: dict[int, str],
    whole_file: bool = False,
) -> None:
    """Append the ``ingest.rejected`` event of one batch: counts by reason (the value
    quoted by a parse error left out, so that alike reasons count together) and the first
    few examples. ``whole_file``: the file could not be read at all."""
    by_reason: dict[str, int] = {}
    for r in reasons.values():
        key = r.split(":")[0] if "not a number" in r or "unknown label" in r else r
        by_reason[key] = by_reason.get(key, 0) + 1
    payload = ev.IngestRejected(
        source=batch.origin,
        accepted=accepted,
        rejected=0 if whole_file else len(reasons),
        whole_file=whole_file,
        reasons=dict(sorted(by_reason.items(), key=lambda kv: -kv[1])[:10]),
        examples=tuple(
            ev.RejectedRow(row=batch.first_row + i, reason=r)
            for i, r in sorted(reasons.items())[:MAX_EXAMPLES]
        ),
    )
    events.append(ev.INGEST_REJECTED, payload, conn=conn)


def _raw(frame: pd.DataFrame, i: int) -> str:
    """Row ``i`` of ``frame`` as text for the quarantine table (blank past the end)."""
    if i >= len(frame):
        return ""
    rec = frame.iloc[i].to_dict()
    return repr({k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in rec.items()})[
        :500
    ]
