"""A directory watched for new CSV, Parquet or JSON-lines files.

Only complete lines are read: a CSV or JSON-lines file is read up to its last newline,
and only once its size and mtime have been still for ``settle_seconds``; a last line
without a newline is held back until it gets one (or, after ``incomplete_seconds`` of
stillness, is read as the file's last line, where a cut row is quarantined for its
missing fields, never stored with blanks). A file that grows after it was read is read
again from where it stopped; one that shrinks or is rewritten in place is rejected with
an ``ingest.rejected`` event. The position in each file survives restarts through the
``processed_files`` table (its ``size`` is the bytes read), written by ingest in the
same transaction as the rows. Writers should drop files as ``name.csv.tmp`` and rename
them (names starting with ``.`` and not matching ``patterns`` are never read).
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path

import pandas as pd

from runtime.config import SchemaConfig
from runtime.intake.entries import allowed_keys
from runtime.intake.settings import DirectorySourceConfig
from runtime.intake.sources import Batch, FileStamp

LINE_FORMATS = {".csv", ".jsonl", ".ndjson", ".json"}


def read_file(path: Path, schema: SchemaConfig) -> Batch:
    """Read one whole CSV, Parquet or JSON-lines file into a batch (never raises on bad
    data; a last line without a newline is read as a line)."""
    st = path.stat()
    stamp = FileStamp(str(path), st.st_size, st.st_mtime)
    if path.suffix.lower() not in LINE_FORMATS:
        return _parse(path, b"", 0, schema, stamp)
    with path.open("rb") as fh:
        data = fh.read()
    return _parse(path, data, 0, schema, FileStamp(str(path), len(data), st.st_mtime))


def _parse(path: Path, data: bytes, offset: int, schema: SchemaConfig, stamp: FileStamp) -> Batch:
    """``data`` (the file's bytes from ``offset``) as a batch; Parquet is read whole."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return _read_csv(path, data, offset, stamp)
        if suffix == ".parquet":
            return Batch(origin=str(path), frame=pd.read_parquet(path), file=stamp)
        if suffix in {".jsonl", ".ndjson", ".json"}:
            return _read_jsonl(path, data, offset, schema, stamp)
    except Exception as err:  # a file we cannot parse is rejected whole, the daemon goes on
        reason = f"cannot read {suffix.lstrip('.')} file: {str(err).splitlines()[0][:200]}"
        return Batch(origin=str(path), frame=pd.DataFrame(), file=stamp, read_error=reason)
    return _rejected(path, stamp, f"unsupported file type {suffix!r} (use .csv, .parquet, .jsonl)")


def _rejected(path: Path, stamp: FileStamp, reason: str) -> Batch:
    return Batch(origin=str(path), frame=pd.DataFrame(), file=stamp, read_error=reason)


def _read_csv(path: Path, data: bytes, offset: int, stamp: FileStamp) -> Batch:
    """CSV values as text; a row with more or fewer fields than the header is an error
    of its own (a cut last line is one), not a row padded with blanks."""
    if offset:  # a continuation: the header is the file's first line
        with path.open("rb") as fh:
            head = fh.readline()
            first_line = fh.read(offset - len(head)).count(b"\n") + 2
        data = head + data
    else:
        first_line = 2
    reader = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    header = next(reader, None)
    if header is None:
        return Batch(origin=str(path), frame=pd.DataFrame(), first_row=first_line, file=stamp)
    if len(set(header)) != len(header):
        raise ValueError("the header repeats a column name")
    records: list[list[str]] = []
    errors: dict[int, str] = {}
    for record in reader:
        if not record:
            continue  # a blank line
        if len(record) != len(header):
            errors[len(records) + 1] = (
                f"row has {len(record)} fields, the header {len(header)} (a cut or ragged line)"
            )
            record = [""] * len(header)
        records.append(record)
    frame = pd.DataFrame(records, columns=header, dtype=object)
    return Batch(origin=str(path), frame=frame, first_row=first_line, row_errors=errors, file=stamp)


def _read_jsonl(
    path: Path, data: bytes, offset: int, schema: SchemaConfig, stamp: FileStamp
) -> Batch:
    records: list[dict[str, object]] = []
    errors: dict[int, str] = {}
    allowed = allowed_keys(schema)
    first_row, first_line = 1, 1
    if offset:  # a continuation: number rows and lines after those read before
        with path.open("rb") as fh:
            before = fh.read(offset).split(b"\n")[:-1]
        first_row += sum(1 for line in before if line.strip())
        first_line += len(before)
    for number, line in enumerate(data.decode("utf-8").split("\n"), start=first_line):
        if not line.strip():
            continue
        row_number = len(records) + 1
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, RecursionError, ValueError) as err:
            msg = err.msg if isinstance(err, json.JSONDecodeError) else type(err).__name__
            errors[row_number] = f"line {number} is not valid JSON ({msg})"
            records.append({})
            continue
        if not isinstance(obj, dict):
            errors[row_number] = f"line {number} is not a JSON object"
            records.append({})
            continue
        extra = sorted(set(obj) - allowed)
        if extra:
            errors[row_number] = f"unexpected key(s) {', '.join(map(repr, extra))}"
        records.append(obj)
    # the index keeps a row for each broken line ({}), or a file of only those would vanish
    frame = pd.DataFrame(records, index=pd.RangeIndex(len(records))) if records else pd.DataFrame()
    keep = [c for c in frame.columns if c in allowed]
    return Batch(
        origin=str(path),
        frame=frame[keep].astype(object),
        first_row=first_row,
        row_errors=errors,
        file=stamp,
    )


class DirectorySource:
    """New files in a directory, oldest first, and what was appended to files read
    before; ``seen`` holds the stamps of what was read (size: the bytes read)."""

    name = "directory"
    blocks_on_retrain = False

    def __init__(
        self, cfg: DirectorySourceConfig, schema: SchemaConfig, seen: set[FileStamp]
    ) -> None:
        self.cfg = cfg
        self.schema = schema
        self.seen = seen
        self.read_upto: dict[str, FileStamp] = {s.path: s for s in seen}
        self.settle_seconds = cfg.settle_seconds
        self.incomplete_seconds = cfg.incomplete_seconds
        self._held: dict[str, tuple[int, float]] = {}  # (size, mtime) of a file whose unread
        # part is one cut line: not looked at again until it changes

    def _pending(self, settled: bool = True) -> list[Path]:
        if not self.cfg.path.is_dir():
            return []
        files: set[Path] = set()
        for pattern in self.cfg.patterns:
            files.update(p for p in self.cfg.path.glob(pattern) if p.is_file() and p.name[0] != ".")
        out = []
        now = time.time()
        for p in files:
            try:
                st = p.stat()
            except FileNotFoundError:
                continue  # renamed or removed since the listing
            done = self.read_upto.get(str(p))
            if done is not None and (done.size, done.mtime) == (st.st_size, st.st_mtime):
                continue
            held = self._held.get(str(p)) == (st.st_size, st.st_mtime)
            if held and now - st.st_mtime < self.incomplete_seconds:
                continue  # its last line is still cut
            if settled and now - st.st_mtime < self.settle_seconds:
                continue  # probably still being written
            out.append((st.st_mtime, p.name, p))
        return [p for _, _, p in sorted(out)]

    def poll(self) -> Batch | None:
        for path in self._pending():
            batch = self._read(path)
            if batch is not None:
                assert batch.file is not None
                self.seen.add(batch.file)
                self.read_upto[batch.file.path] = batch.file
                return batch
        return None

    def _read(self, path: Path) -> Batch | None:
        """The unread complete lines of ``path`` (None: nothing complete yet), or a
        rejection when it changed other than by growing since it was read."""
        try:
            st = path.stat()
            done = self.read_upto.get(str(path))
            offset = 0 if done is None else done.size
            changed = self._changed(path, done, st)
            if changed is not None:
                return _rejected(path, FileStamp(str(path), st.st_size, st.st_mtime), changed)
            if path.suffix.lower() not in LINE_FORMATS:
                whole = FileStamp(str(path), st.st_size, st.st_mtime)
                return _parse(path, b"", 0, self.schema, whole)
            with path.open("rb") as fh:
                fh.seek(offset)
                data = fh.read(max(0, st.st_size - offset))
        except FileNotFoundError:
            return None
        complete = data.rfind(b"\n") + 1
        if complete < len(data) and time.time() - st.st_mtime < self.incomplete_seconds:
            data = data[:complete]  # the cut last line waits for its newline
            self._held[str(path)] = (st.st_size, st.st_mtime)
            if not data:
                return None
        else:
            self._held.pop(str(path), None)
        stamp = FileStamp(str(path), offset + len(data), st.st_mtime)
        return _parse(path, data, offset, self.schema, stamp)

    @staticmethod
    def _changed(path: Path, done: FileStamp | None, st: os.stat_result) -> str | None:
        """Why a file read before cannot be read on from where it stopped, or None."""
        if done is None:
            return None
        why = None
        if st.st_size < done.size:
            why = f"it shrank from {done.size} to {st.st_size} bytes"
        elif st.st_size == done.size:
            why = "it was modified in place"
        elif path.suffix.lower() not in LINE_FORMATS:
            why = "a Parquet file cannot be read on from where it stopped"
        elif done.size:
            with path.open("rb") as fh:
                fh.seek(done.size - 1)
                if fh.read(1) != b"\n":
                    why = "it was rewritten (the bytes read no longer end a line)"
        if why is None:
            return None
        return (
            f"file changed after its first {done.size} bytes were read: {why}; what was read "
            "stays stored, nothing more is read from it (drop new data as a new file)"
        )

    def exhausted(self) -> bool:
        return not self._pending(settled=False)

    @property
    def cursor(self) -> int:
        return 0

    def ack(self, batch: Batch) -> None:
        """Files are marked processed in the rows' own transaction: nothing to do."""

    def close(self) -> None:
        """Holds no connection."""

    def lag(self) -> None:
        """No backlog to count here."""
        return None
