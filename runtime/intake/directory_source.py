"""A directory watched for new CSV, Parquet or JSON-lines files.

Its position survives restarts through the ``processed_files`` table, written by ingest
in the same transaction as the rows.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from runtime.config import SchemaConfig
from runtime.intake.settings import DirectorySourceConfig
from runtime.intake.sources import Batch, FileStamp


def read_file(path: Path, schema: SchemaConfig) -> Batch:
    """Read one CSV, Parquet or JSON-lines file into a batch (never raises on bad data)."""
    st = path.stat()
    stamp = FileStamp(str(path), st.st_size, st.st_mtime)
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
            return Batch(origin=str(path), frame=frame, first_row=2, file=stamp)
        if suffix == ".parquet":
            return Batch(origin=str(path), frame=pd.read_parquet(path), file=stamp)
        if suffix in {".jsonl", ".ndjson", ".json"}:
            return _read_jsonl(path, schema, stamp)
    except Exception as err:  # a file we cannot parse is rejected whole, the daemon goes on
        reason = f"cannot read {suffix.lstrip('.')} file: {str(err).splitlines()[0][:200]}"
        return Batch(origin=str(path), frame=pd.DataFrame(), file=stamp, read_error=reason)
    return Batch(
        origin=str(path),
        frame=pd.DataFrame(),
        file=stamp,
        read_error=f"unsupported file type {suffix!r} (use .csv, .parquet or .jsonl)",
    )


def _read_jsonl(path: Path, schema: SchemaConfig, stamp: FileStamp) -> Batch:
    records: list[dict[str, object]] = []
    errors: dict[int, str] = {}
    allowed = {*schema.features, schema.label, schema.id_column}
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            row_number = len(records) + 1
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                errors[row_number] = f"line {number} is not valid JSON ({err.msg})"
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
        first_row=1,
        row_errors=errors,
        file=stamp,
    )


class DirectorySource:
    """New files in a directory, oldest first; ``seen`` says which stamps were processed."""

    name = "directory"
    blocks_on_retrain = False

    def __init__(
        self, cfg: DirectorySourceConfig, schema: SchemaConfig, seen: set[FileStamp]
    ) -> None:
        self.cfg = cfg
        self.schema = schema
        self.seen = seen
        self.settle_seconds = 0.2

    def _pending(self, settled: bool = True) -> list[Path]:
        if not self.cfg.path.is_dir():
            return []
        files: set[Path] = set()
        for pattern in self.cfg.patterns:
            files.update(p for p in self.cfg.path.glob(pattern) if p.is_file())
        out = []
        now = time.time()
        for p in files:
            st = p.stat()
            if FileStamp(str(p), st.st_size, st.st_mtime) in self.seen:
                continue
            if settled and now - st.st_mtime < self.settle_seconds:
                continue  # probably still being written
            out.append((st.st_mtime, p.name, p))
        return [p for _, _, p in sorted(out)]

    def poll(self) -> Batch | None:
        pending = self._pending()
        if not pending:
            return None
        batch = read_file(pending[0], self.schema)
        assert batch.file is not None
        self.seen.add(batch.file)
        return batch

    def exhausted(self) -> bool:
        return not self._pending(settled=False)

    @property
    def cursor(self) -> int:
        return 0

    def ack(self, batch: Batch) -> None:
        """Files are marked processed in the rows' own transaction: nothing to do."""

    def close(self) -> None:
        """Holds no connection."""
