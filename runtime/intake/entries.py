"""Broker entries as rows: the JSON decoding and checks every broker source shares.

An entry (a Redis stream entry, a RabbitMQ message) carries one row as a JSON object
(features, optional label, optional row id) or several in a JSON array. A row that
cannot be used is kept with a one-line reason, never dropped and never raised on: the
entry must still be acknowledged, or the broker would deliver it again forever. The
reasons name the entry (``where``), e.g. ``entry 1-0 is not valid JSON (…)``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

import pandas as pd

from runtime.config import SchemaConfig
from runtime.intake.sources import Batch

Row = tuple[dict[str, Any], str | None]
"""A decoded row and ``None``, or ``{}`` and why the row was refused."""

_FLOAT_MAX = sys.float_info.max


@dataclass(frozen=True)
class Decoded:
    """The rows of one entry; ``base`` names it in default row ids (``base`` for a single
    row, ``base:i`` for the i-th row of an array, and for a refused row)."""

    base: str
    single: bool
    rows: list[Row]


def load(raw: str | bytes | None, where: str, part: str) -> tuple[Any, str | None]:
    """The JSON value of ``raw`` and ``None``, or ``None`` and the reason it has none.

    ``raw`` is ``None`` when its bytes were already found not to be UTF-8; ``part``
    names what was decoded in that reason (``field 'row'``, ``the body``).
    """
    if isinstance(raw, bytes):
        try:
            raw = raw.decode()
        except UnicodeDecodeError:
            raw = None
    if raw is None:
        return None, f"{where}: {part} is not valid UTF-8"
    try:
        return json.loads(raw), None
    except json.JSONDecodeError as err:
        return None, f"{where} is not valid JSON ({err.msg})"


def check_rows(items: list[Any], where: str, allowed: set[str]) -> list[Row]:
    """Each item as a row, or refused: not an object, unexpected keys, a number no float
    holds (pandas would raise on the whole batch)."""
    out: list[Row] = []
    for item in items:
        if not isinstance(item, dict):
            out.append(({}, f"{where}: a row must be a JSON object"))
            continue
        extra = sorted(set(item) - allowed)
        if extra:
            out.append(({}, f"{where}: unexpected key(s) {', '.join(map(repr, extra))}"))
            continue
        huge = [k for k, v in item.items() if isinstance(v, int) and abs(v) > _FLOAT_MAX]
        if huge:
            out.append(({}, f"{where}: number too large in {', '.join(map(repr, huge))}"))
            continue
        out.append((dict(item), None))
    return out


def allowed_keys(schema: SchemaConfig) -> set[str]:
    keys = {*schema.inputs, schema.label, schema.id_column}
    return keys | ({schema.timestamp_column} if schema.timestamp_column else set())


def to_batch(entries: list[Decoded], schema: SchemaConfig, origin: str) -> Batch:
    """One batch of the entries' rows; refused rows become its ``row_errors``."""
    records: list[dict[str, Any]] = []
    errors: dict[int, str] = {}
    id_col = schema.id_column
    for entry in entries:
        for i, (rec, problem) in enumerate(entry.rows):
            number = len(records) + 1
            if problem is not None:
                errors[number] = problem
                records.append({id_col: f"{entry.base}:{i}"})
                continue
            if rec.get(id_col) in (None, ""):
                rec[id_col] = entry.base if entry.single else f"{entry.base}:{i}"
            records.append(rec)
    frame = pd.DataFrame.from_records(records).astype(object)
    allowed = allowed_keys(schema)
    keep = [c for c in frame.columns if c in allowed]
    return Batch(
        origin=origin, frame=frame[keep], first_row=1, row_errors=errors, quarantine_once=True
    )
