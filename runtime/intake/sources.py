"""Where rows come from: the :class:`Source` protocol and the :class:`Batch` it hands over.

A source hands the daemon batches; it never validates (that is ingest's job) and never
writes to the database. Each kind lives in a module of its own (``directory_source``,
``demo_stream``, ``redis_source``, ``rabbitmq_source``, ``kafka_source``,
``nats_source``, ``http_source``), built by
:func:`runtime.intake.kinds.build_source` only when a config names it, so no broker
client or demo generator loads on the ingest path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import pandas as pd


@dataclass(frozen=True)
class FileStamp:
    """Identity of a file as first seen: a file is processed once per (path, size, mtime)."""

    path: str
    size: int
    mtime: float


@dataclass(frozen=True)
class Batch:
    """A chunk of incoming rows, not yet validated.

    ``row_errors`` holds problems found while parsing (row number → reason), e.g. a
    JSON-lines record with a missing key; ``file`` is set when the batch is a whole file.
    ``quarantine_once``: a refused row is quarantined once by (origin, row text, reason)
    — a broker's batch, whose refused rows carry the message's stable id, so the same
    message delivered again after a crash is not quarantined a second time.
    """

    origin: str
    frame: pd.DataFrame
    first_row: int = 1
    row_errors: dict[int, str] = field(default_factory=dict)
    file: FileStamp | None = None
    read_error: str | None = None
    quarantine_once: bool = False


class Source(Protocol):
    """What the daemon asks of every source kind.

    ``cursor`` is the position a restart resumes from where the source keeps none of its
    own (the demo stream's row count; 0 elsewhere). ``ack`` is called once the batches
    polled so far are durably stored (a broker acknowledges them then); ``close``
    releases connections when the daemon stops or replaces the source; ``lag`` says how
    many messages wait in a streaming broker, per partition (``None`` where the idea
    does not apply).
    """

    name: str
    blocks_on_retrain: bool  # a replayed stream pauses while the model retrains

    @property
    def cursor(self) -> int: ...

    def poll(self) -> Batch | None:
        """The next batch available now, or ``None``."""
        ...

    def exhausted(self) -> bool:
        """True when this source will never produce another batch."""
        ...

    def ack(self, batch: Batch) -> None:
        """``batch`` is durably stored: acknowledge it to its broker."""
        ...

    def close(self) -> None:
        """Release connections; the source is not polled again."""
        ...

    def lag(self) -> dict[str, int] | None:
        """Messages not yet stored and acknowledged, per partition (Kafka, NATS), or
        ``None`` for a source without a backlog to count (files, demo, HTTP, Redis,
        RabbitMQ)."""
        ...


def source_lag(source: Source) -> dict[str, int] | None:
    """``source.lag()`` copied (per partition, messages not yet acknowledged), or ``None``."""
    lag = source.lag()
    return None if lag is None else dict(lag)
