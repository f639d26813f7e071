"""The first version: when and on which rows v1 is trained if there is no champion yet.

v1 trains on the first ``bootstrap.rows`` labelled rows stored: those of ``bootstrap.data``
(ingested once, before the source is polled) and/or the stream's. Only the leader trains
it; the other daemons adopt it when it appears. The caller ingests and adopts; this class
decides and trains (:func:`runtime.training.bootstrap.bootstrap_from_rows`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from runtime.config import DriftloopConfig
from runtime.intake.directory_source import read_file
from runtime.intake.ingest import Accepted
from runtime.intake.sources import Batch, Source
from runtime.store.db import Database, processed_files
from runtime.store.events import EventLog
from runtime.store.rows import labelled_rows
from runtime.store.versions import Registry
from runtime.training.bootstrap import BootstrapError, bootstrap_from_rows


class FirstVersion:
    """Trains v1 once enough labelled rows are stored."""

    def __init__(
        self,
        cfg: DriftloopConfig,
        db: Database,
        events: EventLog,
        registry: Registry,
        is_leader: Callable[[], bool],
        report: Callable[[str], None],
    ) -> None:
        self.cfg = cfg
        self.db = db
        self.events = events
        self.registry = registry
        self.is_leader = is_leader
        self.report = report

    def ingest_data(self, ingest: Callable[[Batch], None], waiting: bool) -> bool:
        """Hand ``bootstrap.data`` to ``ingest`` once (a file already stored is not
        ingested again). True when the caller should try to train now: a retry after a
        failed bootstrap (``waiting``: still no v1) trains on the rows stored the first time,
        before the source is polled (its rows are the champion's to monitor)."""
        path = self.cfg.bootstrap.data
        if path is None:
            return False
        if not path.is_file():
            raise BootstrapError(f"bootstrap.data: no such file {path}")
        batch = read_file(path, self.cfg.schema)
        done = self._processed(path)
        if done is None:
            ingest(batch)
            return False
        if not waiting:
            return False
        stat = path.stat()
        if stat.st_size != done.size or stat.st_mtime != done.mtime:
            raise BootstrapError(
                f"bootstrap.data {path} changed since its {done.accepted} rows were stored "
                f"({done.processed_at}); a retry trains on the stored rows, so to bootstrap "
                "on the new file start from a fresh state_dir"
            )
        return True

    def refuse_if_trained(self) -> None:
        """``driftloop bootstrap`` trains the first model only."""
        existing = self.registry.champion()
        if existing is not None:
            raise BootstrapError(
                f"{self.cfg.state_dir} already has a champion ({existing}); "
                "bootstrap trains the first model only"
            )

    def collect(
        self,
        source: Source,
        ingest: Callable[[Batch], Accepted],
        handle: Callable[[Accepted], None],
        done: Callable[[], bool],
    ) -> None:
        """Poll ``source`` into ``ingest`` and hand what was stored to ``handle`` until
        ``done()`` (v1 was trained and adopted)."""
        while not done():
            batch = source.poll()
            if batch is not None:
                accepted = ingest(batch)
                source.ack(batch)  # stored: a broker must not deliver it again
                handle(accepted)
            elif source.exhausted():
                raise BootstrapError(
                    f"the data ran out before {self.cfg.bootstrap.rows} labelled rows "
                    "were collected for bootstrap"
                )
            else:
                time.sleep(0.1)

    def maybe_train(self) -> tuple[str, int] | None:
        """Train v1 if this daemon leads and the rows are there: ``(version, its last
        training row)``, or None."""
        if not self.is_leader():
            return None  # the leader trains v1; this daemon adopts it when it appears
        n = self.cfg.bootstrap.rows
        seqs, x, y = labelled_rows(self.db, len(self.cfg.schema.features), since=0,
                                   numeric=self.cfg.schema.numeric_label)
        if len(seqs) < n:
            self.report(f"bootstrap: {len(seqs)}/{n} labelled rows collected")
            return None
        seqs, x, y = seqs[:n], x[:n], y[:n]
        version = bootstrap_from_rows(
            self.cfg,
            self.db,
            self.events,
            self.registry,
            x,
            y,
            first_row=int(seqs[0]),
            last_row=int(seqs[-1]),
            source=self._source(n),
            report=self.report,
        )
        return version, int(seqs[-1])

    def _processed(self, path: Path) -> Any:
        """The ``processed_files`` row of ``path`` (size, mtime, processed_at, accepted), or
        None if it was never ingested."""
        with self.db.connect() as conn:
            return conn.execute(
                select(
                    processed_files.c.size,
                    processed_files.c.mtime,
                    processed_files.c.processed_at,
                    processed_files.c.accepted,
                ).where(processed_files.c.path == str(path))
            ).first()

    def _source(self, n: int) -> str:
        """Where v1's first ``n`` rows came from, for its metadata: ``bootstrap.data``
        and/or the stream."""
        path = self.cfg.bootstrap.data
        if path is None:
            return "stream"
        done = self._processed(path)
        accepted = 0 if done is None else int(done.accepted)
        if accepted >= n:
            return f"bootstrap.data {path}"
        return f"bootstrap.data {path} ({accepted} rows) and the stream"
