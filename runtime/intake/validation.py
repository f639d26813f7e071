"""Judge a batch against the schema: the good rows, and the reason each bad one is refused.

A batch is one of two modes. A batch of rows carries features (and maybe labels and ids);
among its rows, label-only entries (an id and a label, every feature blank) are late labels
for rows stored earlier. A labels-only batch carries only the id and label columns. Every
problem is recorded by row position, first reason kept, so a bad row never stops the rest.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pandas as pd

from runtime.config import SchemaConfig
from runtime.intake.sources import Batch
from runtime.intake.text_columns import tokenize_frame
from runtime.store.rows import labelled
from strategies.tabular import category_code, infer_type

MAX_ID_CHARS = 128  # rows.row_id is String(128); PostgreSQL refuses longer ones


class Validator:
    """Validates batches against one schema; writes nothing."""

    def __init__(self, schema: SchemaConfig) -> None:
        self.schema = schema
        self.classes = set(schema.class_values)
        self._class_values = np.array(sorted(self.classes), dtype=np.float64)
        pairs = zip(schema.classes, schema.class_values, strict=True)
        self._names = {str(c).strip(): v for c, v in pairs}
        self.types: dict[str, str | None] = dict(schema.types())
        self.inferred: dict[str, str] = {}
        self.codes: dict[float, str] = {}  # category code -> text, as seen (for the JSON)

    def infer(self, frame: pd.DataFrame) -> dict[str, str]:
        """Fill the undeclared types from ``frame`` (the first rows); returns those
        inferred now (empty when every type is known)."""
        new = {
            f: infer_type(frame[f].tolist())
            for f, t in self.types.items()
            if t is None and f in frame.columns
        }
        self.types.update(new)
        self.inferred.update(new)
        return new

    def validate(
        self, batch: Batch
    ) -> tuple[pd.DataFrame, dict[int, str], str, pd.DataFrame | None]:
        """Returns (clean frame of good rows, reasons by position, mode, the late labels
        among the rows of a batch of rows, see :meth:`_late_labels`)."""
        s = self.schema
        frame = batch.frame.reset_index(drop=True)
        n = len(frame)
        reasons: dict[int, str] = {
            i: r for i, r in ((k - 1, v) for k, v in batch.row_errors.items())
        }
        cols = set(frame.columns)
        known_cols = {*s.inputs, s.label, s.id_column, s.timestamp_column}
        extra = sorted(cols - known_cols)
        if extra:
            whole = f"unexpected column(s) {', '.join(map(repr, extra))}"
            return frame.iloc[0:0], {i: whole for i in range(n)}, "rows", None
        missing = [f for f in s.inputs if f not in cols]
        if missing and cols <= {s.id_column, s.label} and s.id_column in cols and s.label in cols:
            return self._validate_labels(frame, reasons), reasons, "labels", None
        if missing:
            whole = f"missing column(s) {', '.join(map(repr, missing))}"
            # a row that could not be parsed keeps its own reason (it lacks every column)
            return frame.iloc[0:0], {i: reasons.get(i, whole) for i in range(n)}, "rows", None
        frame = tokenize_frame(frame, s, reasons)
        self.infer(frame)
        x = np.empty((n, len(s.features)), dtype=np.float64)
        for j, f in enumerate(s.features):
            x[:, j] = self._feature(frame[f], f, reasons)
        order, times = self._time_order(frame, reasons)
        out = pd.DataFrame(x, columns=list(s.features), index=frame.index)
        if times is not None:
            out["__ts"] = times
        out["__label"] = self._labels(frame, reasons)
        out["__id"] = self._ids(frame, batch)
        _check_ids(out["__id"].tolist(), reasons)
        late = self._late_mask(frame, batch.row_errors)  # label-only: not rows, not duplicates
        dup = np.zeros(n, dtype=bool)
        dup[~late] = out["__id"][~late].duplicated().to_numpy()
        for pos in np.flatnonzero(dup):
            rid = out["__id"].iloc[pos]
            reasons.setdefault(int(pos), f"duplicate row id {rid!r} in this batch")
        good = ~late
        good[list(reasons)] = False
        kept = out.iloc[order][good[order]]
        return kept, reasons, "rows", self._late_labels(frame, late, reasons)

    def encode(self, frame: pd.DataFrame) -> tuple[npt.NDArray[np.float64], dict[int, str]]:
        """The features of ``frame`` (every schema input a column) in the stored form,
        and the reason each bad row is refused (as ingest would, labels aside)."""
        reasons: dict[int, str] = {}
        frame = tokenize_frame(frame.reset_index(drop=True), self.schema, reasons)
        x = np.empty((len(frame), len(self.schema.features)), dtype=np.float64)
        for j, f in enumerate(self.schema.features):
            col = frame[f]
            if (self.types.get(f) or "numeric") == "numeric":
                col = col.where(col.notna(), np.nan)
                col = col.infer_objects()
            x[:, j] = self._feature(col, f, reasons)
        return x, reasons

    def _time_order(
        self, frame: pd.DataFrame, reasons: dict[int, str]
    ) -> tuple[npt.NDArray[np.int64], list[str | None] | None]:
        """Row positions in ``schema.timestamp_column`` order (stable; as read without
        one) and each row's time as canonical UTC text (:func:`iso_times`; None without
        the column); a row whose time cannot be read is refused."""
        col = self.schema.timestamp_column
        if col is None or col not in frame.columns:
            return np.arange(len(frame)), None
        raw = frame[col]
        t = parse_times(raw)
        bad = t.isna().to_numpy() & ~_blank(raw)
        for i in np.flatnonzero(bad | _blank(raw)):
            reasons.setdefault(int(i), f"timestamp '{col}' is missing or unreadable")
        key = t.to_numpy(dtype="datetime64[ns]").astype(np.int64)
        return np.argsort(key, kind="stable"), iso_times(t)

    def _feature(self, raw: pd.Series, f: str, reasons: dict[int, str]) -> npt.NDArray[np.float64]:
        """One feature column as floats (a category as its code, a boolean as 0/1, NaN
        where missing); problems recorded by row position."""
        kind = self.types.get(f) or "numeric"
        if kind == "categorical":
            return self._category(raw, f, reasons)
        if kind == "boolean":
            return self._boolean(raw, f, reasons)
        if raw.dtype.kind in "fiub":  # already numeric: no parsing, only NaN/inf checks
            num = raw.to_numpy(dtype=np.float64)
            blank = np.isnan(num)
            bad_type = np.zeros(len(num), dtype=bool)
        else:
            blank = raw.isna().to_numpy()
            blank |= (raw.astype(str).str.strip() == "").to_numpy()
            num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
            bad_type = np.isnan(num) & ~blank
        for i in np.flatnonzero(bad_type):
            reasons.setdefault(int(i), f"feature '{f}' is not a number: {str(raw.iloc[i])[:40]!r}")
        self._missing(blank, f, reasons)
        for i in np.flatnonzero(np.isinf(num)):
            reasons.setdefault(int(i), f"feature '{f}' is not finite")
        return np.asarray(num, dtype=np.float64)

    def _missing(self, blank: npt.NDArray[np.bool_], f: str, reasons: dict[int, str]) -> None:
        if self.schema.missing_rule(f) == "refuse":
            for i in np.flatnonzero(blank):
                reasons.setdefault(int(i), f"feature '{f}' is missing or NaN (missing: refuse)")

    def _category(self, raw: pd.Series, f: str, reasons: dict[int, str]) -> npt.NDArray[np.float64]:
        blank = _blank(raw)
        out = np.full(len(raw), np.nan)
        for i, v in enumerate(raw.tolist()):
            if not blank[i]:
                out[i] = category_code(v)
                if len(self.codes) < 100000:
                    self.codes.setdefault(out[i], str(v).strip()[:80])
        self._missing(blank, f, reasons)
        return out

    def _boolean(self, raw: pd.Series, f: str, reasons: dict[int, str]) -> npt.NDArray[np.float64]:
        blank = _blank(raw)
        out = np.full(len(raw), np.nan)
        for i, v in enumerate(raw.tolist()):
            if blank[i]:
                continue
            b = _BOOLS.get(str(v).strip().lower())
            if b is None:
                reasons.setdefault(i, f"feature '{f}' is not a boolean: {str(v)[:40]!r}")
            else:
                out[i] = b
        self._missing(blank, f, reasons)
        return out

    def labels(self, frame: pd.DataFrame, reasons: dict[int, str]) -> pd.Series:
        """The labels of ``frame`` as stored (class values, -1 where missing; targets,
        NaN), a bad one's reason recorded by row position."""
        return self._labels(frame, reasons)

    def _labels(self, frame: pd.DataFrame, reasons: dict[int, str]) -> pd.Series:
        s = self.schema
        if s.label not in frame.columns:
            if s.numeric_label:
                return pd.Series(np.nan, index=frame.index, dtype=np.float64)
            return pd.Series(-1, index=frame.index, dtype=np.int64)
        raw = frame[s.label]
        blank = _blank(raw)
        if s.numeric_label:
            return _numeric_labels(raw, blank, reasons)
        if s.string_classes:
            return self._named_labels(raw, blank, reasons)
        num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            whole = np.isfinite(num) & (num == np.round(num))
        known = whole & np.isin(np.where(whole, num, 0), sorted(self.classes))
        labels = np.where(known, np.where(whole, num, -1), -1).astype(np.int64)
        for i in np.flatnonzero(~blank & ~known):
            reasons.setdefault(
                int(i), f"unknown label {str(raw.iloc[i])[:40]!r} (classes: {sorted(self.classes)})"
            )
        return pd.Series(labels, index=frame.index)

    def _named_labels(
        self, raw: pd.Series, blank: npt.NDArray[np.bool_], reasons: dict[int, str]
    ) -> pd.Series:
        """String classes: each label by its text (an integer 1 matches class "1")."""
        labels = np.full(len(raw), -1, dtype=np.int64)
        for i, v in enumerate(raw.tolist()):
            if blank[i]:
                continue
            text = str(int(v)) if isinstance(v, float) and v.is_integer() else str(v).strip()
            pos = self._names.get(text)
            if pos is None:
                reasons.setdefault(
                    i, f"unknown label {text[:40]!r} (classes: {list(self.schema.classes)})"
                )
            else:
                labels[i] = pos
        return pd.Series(labels, index=raw.index)

    def _ids(self, frame: pd.DataFrame, batch: Batch) -> pd.Series:
        s = self.schema
        generated = [f"{batch.origin}#{batch.first_row + i}" for i in range(len(frame))]
        if s.id_column not in frame.columns:
            return pd.Series(generated, index=frame.index)
        raw = frame[s.id_column]
        text = raw.astype(str).str.strip()
        missing = raw.isna() | (text == "")
        return text.where(~missing, pd.Series(generated, index=frame.index))

    def _late_mask(
        self, frame: pd.DataFrame, row_errors: Mapping[int, str]
    ) -> npt.NDArray[np.bool_]:
        """Rows of a batch of rows that carry only a row id and a label (every feature
        blank): late labels for rows stored earlier (or earlier in this batch), as a
        broker delivers them mixed with new rows. A row that failed parsing
        (``row_errors``, 1-based: a ragged HTTP row, a broken JSON line) is not one."""
        s = self.schema
        if s.id_column not in frame.columns or s.label not in frame.columns:
            return np.zeros(len(frame), dtype=bool)
        late = ~_blank(frame[s.id_column]) & ~_blank(frame[s.label])
        for f in s.features:
            if f in frame.columns:
                late &= _blank(frame[f])
        late[[k - 1 for k in row_errors if 0 < k <= len(late)]] = False
        return late

    def _late_labels(
        self, frame: pd.DataFrame, late: npt.NDArray[np.bool_], reasons: dict[int, str]
    ) -> pd.DataFrame | None:
        """The late labels (rows ``late`` of ``frame``, see :meth:`_late_mask`), validated
        as a labels-only batch would be, indexed by their positions in ``frame``; their
        feature-missing reasons replaced by their own. ``None`` when there are none."""
        pos = np.flatnonzero(late)
        if not len(pos):
            return None
        sub = frame.iloc[pos].reset_index(drop=True)
        sub_reasons: dict[int, str] = {}
        clean = self._validate_labels(sub, sub_reasons)
        clean.index = pd.Index(pos[clean.index.to_numpy()])
        for i in pos:
            reasons.pop(int(i), None)
        reasons.update({int(pos[k]): v for k, v in sub_reasons.items()})
        return clean

    def _validate_labels(self, frame: pd.DataFrame, reasons: dict[int, str]) -> pd.DataFrame:
        out = pd.DataFrame(index=frame.index)
        out["__label"] = self._labels(frame, reasons)
        out["__id"] = frame[self.schema.id_column].astype(str).str.strip()  # as rows' ids are
        _check_ids(out["__id"].tolist(), reasons)
        for i, known in enumerate(labelled(out["__label"].to_numpy()).tolist()):
            if not known:
                reasons.setdefault(i, "label is missing")
        good = np.ones(len(frame), dtype=bool)
        good[list(reasons)] = False
        return out[good]

    def clean_labels(
        self, labels: npt.NDArray[np.float64] | None, n: int
    ) -> npt.NDArray[np.int64] | None:
        """Labels as class values (-1 where missing), or None if any is not a class;
        numeric labels as they are (NaN where missing), or None if any is infinite."""
        if labels is None:
            if self.schema.numeric_label:
                return np.full(n, np.nan)
            return np.full(n, -1, dtype=np.int64)
        if len(labels) != n:
            return None
        if self.schema.numeric_label:
            return None if np.isinf(labels).any() else labels.astype(np.float64)
        missing = np.isnan(labels)
        known = np.isin(labels, self._class_values)
        if not bool((missing | known).all()):
            return None
        return np.where(known, labels, -1).astype(np.int64)


def _numeric_labels(
    raw: pd.Series, blank: npt.NDArray[np.bool_], reasons: dict[int, str]
) -> pd.Series:
    """Regression targets as float64 (NaN where blank); a label that is not a finite
    number is a reason."""
    num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    for i in np.flatnonzero(~blank & ~np.isfinite(num)):
        reasons.setdefault(int(i), f"label {str(raw.iloc[i])[:40]!r} is not a finite number")
    return pd.Series(np.where(np.isfinite(num), num, np.nan), index=raw.index)


_BOOLS = {"true": 1.0, "false": 0.0, "yes": 1.0, "no": 0.0, "1": 1.0, "0": 0.0,
          "1.0": 1.0, "0.0": 0.0, "t": 1.0, "f": 0.0, "y": 1.0, "n": 0.0}


EPOCH_SECONDS_MAX = 9.2e9  # datetime64[ns] spans about +-9.22e9 s around 1970


def parse_times(raw: pd.Series) -> pd.Series:
    """Event times as UTC timestamps (NaT where unreadable): a number (or a CSV's text of
    one) is epoch seconds, anything else ISO 8601 (an offset converted, none: UTC)."""
    num = pd.to_numeric(raw, errors="coerce")
    if raw.dtype.kind in "fiu":
        return _epoch_seconds(num)
    iso = pd.to_datetime(raw.where(num.isna()), errors="coerce", utc=True, format="mixed")
    return iso.where(num.isna(), _epoch_seconds(num))


def _epoch_seconds(num: pd.Series) -> pd.Series:
    """Epoch seconds as UTC timestamps, NaT where missing or out of range (beyond the
    years 1677-2262 that nanosecond timestamps hold). Only those in range are converted:
    pandas casts the column to integers under ``errstate(over="raise")``, so a NaN or a
    huge number among them raises (``FloatingPointError`` was seen, ``OverflowError``
    for 1e30) even with ``errors="coerce"``."""
    out = pd.Series(pd.NaT, index=num.index, dtype="datetime64[ns, UTC]")
    secs = num.astype(float).to_numpy()
    with np.errstate(invalid="ignore"):
        present = pd.Series(np.abs(secs) < EPOCH_SECONDS_MAX, index=num.index)
    if present.any():
        out[present] = pd.to_datetime(num[present], unit="s", errors="coerce", utc=True)
    return out


def iso_times(t: pd.Series) -> list[str | None]:
    """UTC times as event timestamps are written (``2026-03-01T10:00:00.123Z``: they
    compare as text); None where a time is missing."""
    text = t.dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str.slice(0, 23) + "Z"
    return [None if pd.isna(v) else str(v) for v in text.where(t.notna(), None)]


def plain_ids(ids: list[str]) -> bool:
    """Row ids that :meth:`Validator._ids` would keep as they are, none repeated."""
    distinct = set(ids)
    if len(distinct) != len(ids) or "" in distinct or list(map(str.strip, ids)) != ids:
        return False
    return not ids or (max(map(len, ids)) <= MAX_ID_CHARS and _storable("".join(ids)))


def _blank(raw: pd.Series) -> npt.NDArray[np.bool_]:
    """Missing values of a column: NaN/None, and empty or blank text."""
    blank = raw.isna().to_numpy()
    if raw.dtype == object:
        blank |= (raw.astype(str).str.strip() == "").to_numpy()
    return np.asarray(blank, dtype=bool)


def _storable(text: str) -> bool:
    """Text the database can hold: no NUL (PostgreSQL refuses it), encodable as UTF-8
    (a JSON ``\\ud800`` escape decodes to a lone surrogate)."""
    if "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _check_ids(ids: list[str], reasons: dict[int, str]) -> None:
    """Quarantine rows whose id cannot be stored (it would fail the whole batch's write)."""
    for i, rid in enumerate(ids):
        if len(rid) > MAX_ID_CHARS:
            reasons.setdefault(i, f"row id is longer than {MAX_ID_CHARS} characters")
        elif not _storable(rid):
            reasons.setdefault(i, "row id contains a NUL or a character that is not UTF-8")
