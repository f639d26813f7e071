"""A Kafka source (the one module that imports confluent_kafka).

The daemon owns every partition of its topic: streaming detectors need one ordered stream
per model, and one daemon leads, so partitions are assigned explicitly rather than
balanced across a consumer group. The group ``group_id`` only keeps the offsets. Each
partition starts at the offset committed there (``start`` where none is), and after the
rows of a batch are durably written (:meth:`KafkaSource.ack`, called after ingest commits)
each partition's next offset (last offset + 1) is committed synchronously. A batch read
but never committed — the daemon died in between — is read again after a restart, and
ingest is idempotent by row id, so each row is stored exactly once in effect. The topic's
partitions are listed again every ``partition_check_seconds``; a new one is read from its
start (or its committed offset).

Order: the messages of a batch (up to ``batch_size``, from any partitions) reach ingest
and the detectors sorted by ``timestamp_column`` — the first row's value in each
message — when the source names one, ties and rows without it by partition then offset;
without ``timestamp_column``, by partition, then offset. Within a partition the order is
always the log's.

Message format: the value is one JSON object (features, optional label and row id) or a
JSON array of such objects, UTF-8. A row without an id gets ``topic:partition:offset``
(``…:i`` for the i-th row of an array), which is stable across redelivery. A message that
cannot be used (no value, not JSON, wrong columns) is quarantined with its reason and its
offset committed like any other, so it is never read again.

Lag (:meth:`KafkaSource.lag`) per partition is the high watermark last reported to the
consumer minus the committed offset; :func:`group_lag` asks the broker the same for
``driftloop status`` while the daemon may be down.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from runtime.config import SchemaConfig
from runtime.intake.entries import Decoded, Row, allowed_keys, check_rows, load, to_batch
from runtime.intake.redis_source import BrokerError
from runtime.intake.settings import KafkaSourceConfig
from runtime.intake.sources import Batch

log = logging.getLogger(__name__)
# librdkafka logs each failed connection attempt; error_cb reports them as one line
_LIBRDKAFKA = logging.getLogger("runtime.intake.kafka_source.librdkafka")
_LIBRDKAFKA.setLevel(logging.CRITICAL)
_REPEAT_S = 60.0  # the same broker error is logged at most once a minute


@dataclass(frozen=True)
class _Message:
    partition: int
    offset: int
    value: bytes | None


class KafkaSource:
    """Batches from every partition of a Kafka topic; see the module docstring."""

    name = "kafka"
    blocks_on_retrain = False

    def __init__(self, cfg: KafkaSourceConfig, schema: SchemaConfig) -> None:
        self.cfg = cfg
        self.schema = schema
        ts = cfg.timestamp_column
        if ts is not None and ts not in schema.features:
            raise BrokerError(f"kafka timestamp_column {ts!r} is not one of schema.features")
        self._allowed = allowed_keys(schema)
        self._connecting = True  # errors are kept, not logged, until the topic is listed
        self._first_error: str | None = None
        self._logged: dict[str, float] = {}  # error text -> when last logged
        self._consumer = _consumer(cfg, self._on_error)
        self._partitions: set[int] = set()
        self._committed: dict[int, int] = {}  # the next offset to read, as committed
        self._high: dict[int, int] = {}  # the high watermark last seen
        self._eof: set[int] = set()  # partitions read to their end
        self._inbox: deque[_Message] = deque()  # consumed, not yet in a batch
        self._unacked: list[_Message] = []  # the last batch, until ack()
        self._idle = False
        self._lag: dict[str, int] = {}
        self._checked = time.monotonic()
        try:
            self._assign_new()
        except KafkaException as err:
            self.close()
            where = cfg.bootstrap_servers
            raise BrokerError(f"cannot reach kafka at {where}: {self._why(err)}") from None
        self._connecting = False

    # -- Source ---------------------------------------------------------------------------
    def poll(self) -> Batch | None:
        if self._unacked:
            # the previous batch was never committed (its ingest failed): read it again
            self._inbox.extendleft(reversed(self._unacked))
            self._unacked = []
        if time.monotonic() - self._checked >= self.cfg.partition_check_seconds:
            self._checked = time.monotonic()
            try:
                self._assign_new()
            except KafkaException as err:
                log.warning(
                    "kafka: cannot list the partitions of %r (%s)", self.cfg.topic, _reason(err)
                )
        messages = self._read()
        if not messages:
            self._idle = True
            return None
        self._idle = False
        self._unacked = messages
        return self._batch(messages)

    @property
    def cursor(self) -> int:
        """The group keeps the position (committed offsets are not read again)."""
        return 0

    def ack(self, batch: Batch) -> None:
        """Commit, per partition, the offset after the last message of the last batch."""
        if not self._unacked:
            return
        last: dict[int, int] = {}
        for m in self._unacked:
            last[m.partition] = max(last.get(m.partition, -1), m.offset)
        self._unacked = []
        offsets = [TopicPartition(self.cfg.topic, p, o + 1) for p, o in sorted(last.items())]
        try:
            done = self._consumer.commit(offsets=offsets, asynchronous=False) or []
        except KafkaException as err:
            log.warning(
                "kafka offset commit failed (%s); the rows are stored, a later commit covers them",
                _reason(err),
            )
            return
        for tp in done:
            if tp.error is None and tp.offset >= 0:
                self._committed[tp.partition] = max(self._committed.get(tp.partition, 0), tp.offset)
        self._update_lag()

    def exhausted(self) -> bool:
        """Every partition read to its end, nothing in hand, everything committed."""
        if not self.cfg.drain_when_empty or not self._idle or self._unacked or self._inbox:
            return False
        return all(
            p in self._eof and self._committed.get(p, 0) >= self._high.get(p, 0)
            for p in self._partitions
        )

    def lag(self) -> dict[str, int]:
        """Messages not yet committed, per partition (as last reported by the broker).

        Read from the API's thread: a copy of what the last poll or commit computed."""
        return dict(self._lag)

    def _update_lag(self) -> None:
        self._lag = {
            str(p): max(0, self._high.get(p, 0) - self._committed.get(p, 0))
            for p in sorted(self._partitions)
        }

    def close(self) -> None:
        """Leave the topic; nothing is committed here (ack() commits what is stored)."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(KafkaException, RuntimeError):  # closing anyway
                consumer.close()

    # -- partitions -------------------------------------------------------------------------
    def _assign_new(self) -> None:
        """Assign the topic's partitions not yet read, each from its committed offset."""
        new = sorted(partitions(self._consumer, self.cfg) - self._partitions)
        if not new:
            return
        timeout = self.cfg.metadata_timeout_ms / 1000
        tps = [TopicPartition(self.cfg.topic, p) for p in new]
        start: list[TopicPartition] = []
        for tp in self._consumer.committed(tps, timeout=timeout):
            if tp.error is not None:
                raise KafkaException(tp.error)
            lo, hi = self._consumer.get_watermark_offsets(tp, timeout=timeout)
            self._high[tp.partition] = max(hi, 0)
            if tp.offset >= 0:
                offset = self._committed[tp.partition] = tp.offset
            else:
                earliest = self.cfg.start == "earliest"
                offset = OFFSET_BEGINNING if earliest else OFFSET_END
                self._committed[tp.partition] = max(lo if earliest else hi, 0)
            start.append(TopicPartition(self.cfg.topic, tp.partition, offset))
        self._consumer.incremental_assign(start)
        self._partitions.update(new)
        self._update_lag()
        log.info(
            "kafka topic %r: reading partition(s) %s", self.cfg.topic, ", ".join(map(str, new))
        )

    # -- reading ----------------------------------------------------------------------------
    def _read(self) -> list[_Message]:
        n = self.cfg.batch_size
        if len(self._inbox) < n:
            # a partition's end is an event in the same queue: wait up to block_ms for the
            # first message, then take what is there without waiting to fill n
            deadline = time.monotonic() + self.cfg.block_ms / 1000
            while len(self._inbox) < n:
                wait = 0.0 if self._inbox else max(0.0, deadline - time.monotonic())
                got = self._consumer.consume(n - len(self._inbox), wait)
                if not got:
                    break
                for m in got:
                    self._take(m)
            for p in self._partitions:
                _lo, hi = self._consumer.get_watermark_offsets(
                    TopicPartition(self.cfg.topic, p), cached=True
                )
                self._high[p] = max(self._high.get(p, 0), hi)
            self._update_lag()
        return [self._inbox.popleft() for _ in range(min(n, len(self._inbox)))]

    def _take(self, m: Any) -> None:
        p = m.partition()
        err = m.error()
        if err is None:
            self._eof.discard(p)
            self._inbox.append(_Message(p, m.offset(), m.value()))
            self._high[p] = max(self._high.get(p, 0), m.offset() + 1)
        elif err.code() == KafkaError._PARTITION_EOF:
            self._eof.add(p)
            self._high[p] = max(self._high.get(p, 0), m.offset())
        else:
            self._on_error(err)

    def _on_error(self, err: KafkaError) -> None:
        """librdkafka's errors (it retries by itself): each text logged once a minute at
        most; while connecting they are only kept, for the one-line error if it fails."""
        text = err.str()
        if self._connecting:
            self._first_error = self._first_error or text
            return
        now = time.monotonic()
        if now - self._logged.get(text, -_REPEAT_S) >= _REPEAT_S:
            log.warning("kafka: %s", text)
            self._logged[text] = now

    def _why(self, err: KafkaException) -> str:
        """The broker's first error (a refused connection) rather than a bare time-out."""
        return self._first_error or _reason(err)

    # -- decoding ---------------------------------------------------------------------------
    def _batch(self, messages: list[_Message]) -> Batch:
        decoded: list[tuple[tuple[float, int, int], Decoded]] = []
        for m in messages:
            base = f"{self.cfg.topic}:{m.partition}:{m.offset}"
            rows, single = self._rows(m.value, f"message {base}")
            decoded.append(((self._time(rows), m.partition, m.offset), Decoded(base, single, rows)))
        decoded.sort(key=lambda kd: kd[0])
        return to_batch([d for _, d in decoded], self.schema, origin=f"kafka:{self.cfg.topic}")

    def _rows(self, value: bytes | None, where: str) -> tuple[list[Row], bool]:
        if value is None:
            return [({}, f"{where} has no value")], True
        obj, problem = load(value, where, "the value")
        if problem is not None:
            return [({}, problem)], True
        single = not isinstance(obj, list)
        return check_rows([obj] if single else obj, where, self._allowed), single

    def _time(self, rows: list[Row]) -> float:
        """The message's place by ``timestamp_column`` (0 without one: partition order)."""
        col = self.cfg.timestamp_column
        if col is None:
            return 0.0
        for rec, problem in rows:
            if problem is None:
                try:
                    t = float(rec.get(col))  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    return math.inf
                return t if math.isfinite(t) else math.inf
        return math.inf


def _consumer(cfg: KafkaSourceConfig, on_error: Any) -> Any:
    conf: dict[str, Any] = {
        **cfg.options,
        "bootstrap.servers": cfg.bootstrap_servers,
        "group.id": cfg.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": cfg.start,
        "enable.partition.eof": True,
        "error_cb": on_error,
        "logger": _LIBRDKAFKA,
    }
    try:
        return Consumer(conf)
    except KafkaException as err:
        raise BrokerError(f"kafka settings: {_reason(err)}") from None


def partitions(consumer: Any, cfg: KafkaSourceConfig) -> set[int]:
    """The topic's partition ids (none while the topic does not exist)."""
    md = consumer.list_topics(cfg.topic, timeout=cfg.metadata_timeout_ms / 1000)
    topic = md.topics.get(cfg.topic)
    if topic is None:
        return set()
    if topic.error is not None and topic.error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
        raise KafkaException(topic.error)
    return set(topic.partitions)


def group_lag(cfg: KafkaSourceConfig) -> dict[str, int]:
    """Per partition, the high watermark minus the group's committed offset, asked of the
    broker (``driftloop status``); raises :class:`BrokerError` if it cannot be asked."""
    errors: list[str] = []
    consumer = _consumer(cfg, lambda err: errors.append(err.str()))
    timeout = cfg.metadata_timeout_ms / 1000
    try:
        found = sorted(partitions(consumer, cfg))
        tps = [TopicPartition(cfg.topic, p) for p in found]
        out: dict[str, int] = {}
        for tp in consumer.committed(tps, timeout=timeout) if tps else []:
            lo, hi = consumer.get_watermark_offsets(tp, timeout=timeout)
            done = tp.offset if tp.offset >= 0 else lo
            out[str(tp.partition)] = max(0, hi - done)
        return out
    except KafkaException as err:
        why = errors[-1] if errors else _reason(err)
        raise BrokerError(f"cannot reach kafka at {cfg.bootstrap_servers}: {why}") from None
    finally:
        with contextlib.suppress(KafkaException, RuntimeError):
            consumer.close()


def _reason(err: BaseException) -> str:
    """A librdkafka error as one short line."""
    inner = err.args[0] if err.args else None
    text = inner.str() if isinstance(inner, KafkaError) else str(err)
    return (text.strip() or type(err).__name__).splitlines()[0][:300]
