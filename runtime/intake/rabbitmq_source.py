"""A RabbitMQ source (the one module that imports pika).

Messages are consumed from a durable queue (declared if missing) with manual
acknowledgement; the broker sends at most ``prefetch`` unacknowledged ones ahead. The
messages of a batch are acknowledged (one ``basic.ack`` with ``multiple``) only after
the daemon has written their rows durably (:meth:`RabbitMQSource.ack`, called after
ingest commits). A message read but never acknowledged — the daemon died in between,
or its connection was lost — is put back by RabbitMQ and delivered again, to this or
another consumer of the queue. Delivery is therefore at least once, and ingest is
idempotent by row id, so each row is stored exactly once in effect.

Message format: the body is one JSON object (features, optional label and row id) or a
JSON array of such objects, UTF-8. A row without an id gets one that is stable across
redelivery: the message's ``message_id`` property when the publisher set one, else the
sha256 of the body (hex); the i-th row of an array gets that plus ``:i``. Without ids,
identical bodies are therefore one row: publishers whose rows may repeat exactly must
give each a row id or a ``message_id``.

A connection that is lost (a broker restart, a missed heartbeat while the daemon was
busy) is opened again on the next poll; what it had read and not acknowledged comes
again. A broker that cannot be reached is a :class:`~runtime.intake.redis_source.BrokerError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions

from runtime.config import SchemaConfig
from runtime.intake.entries import Decoded, Row, allowed_keys, check_rows, load, to_batch
from runtime.intake.redis_source import BrokerError
from runtime.intake.settings import RabbitMQSourceConfig
from runtime.intake.sources import Batch

log = logging.getLogger(__name__)
# pika logs each failure it raises at ERROR, with a traceback; we report it as one line
logging.getLogger("pika").setLevel(logging.CRITICAL)

_LINGER_S = 0.02  # once a message is in, how long to wait for the rest of a batch


@dataclass(frozen=True)
class _Message:
    tag: int  # the delivery tag, valid on the connection that received it
    base: str  # the default row id: message_id, or the body's sha256
    body: bytes


class RabbitMQSource:
    """Batches from a durable RabbitMQ queue; see the module docstring."""

    name = "rabbitmq"
    blocks_on_retrain = False

    def __init__(self, cfg: RabbitMQSourceConfig, schema: SchemaConfig) -> None:
        self.cfg = cfg
        self.schema = schema
        self._allowed = allowed_keys(schema)
        self._conn: Any = None
        self._channel: Any = None
        self._inbox: deque[_Message] = deque()  # delivered, not yet in a batch
        self._unacked: list[_Message] = []  # the last batch, until ack()
        self._idle = False
        self._consuming = False  # from the first poll: a source built and dropped reads nothing
        self._connect()

    # -- Source ---------------------------------------------------------------------------
    def poll(self) -> Batch | None:
        if self._unacked:
            # the previous batch was never acknowledged (its ingest failed): read it again
            self._inbox.extendleft(reversed(self._unacked))
            self._unacked = []
        try:
            self._connected()
            messages = self._read()
        except pika.exceptions.AMQPError as err:
            self._lost(err)
            return None
        if not messages:
            self._idle = True
            return None
        self._idle = False
        self._unacked = messages
        return self._batch(messages)

    @property
    def cursor(self) -> int:
        """The broker keeps the position (acknowledged entries are not redelivered)."""
        return 0

    def ack(self, batch: Batch) -> None:
        """Acknowledge the messages of the last batch (its rows are stored)."""
        if not self._unacked:
            return
        try:
            self._channel.basic_ack(delivery_tag=self._unacked[-1].tag, multiple=True)
        except pika.exceptions.AMQPError as err:
            self._lost(err)  # RabbitMQ delivers them again; ingest skips the stored rows
        self._unacked = []

    def exhausted(self) -> bool:
        if not self.cfg.drain_when_empty or not self._idle or self._unacked or self._inbox:
            return False
        try:
            self._connected()
            declared = self._channel.queue_declare(self.cfg.queue, passive=True)
            # a delivery the broker sent before its answer is dispatched now, not missed
            self._conn.process_data_events(time_limit=0)
        except pika.exceptions.AMQPError as err:
            self._lost(err)
            return False
        return int(declared.method.message_count) == 0 and not self._inbox

    def close(self) -> None:
        """Close the connection; RabbitMQ puts back what was not acknowledged."""
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None and conn.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError):  # closing anyway
                conn.close()

    def lag(self) -> None:
        """No backlog to count here."""
        return None

    # -- connection -------------------------------------------------------------------------
    def _connect(self) -> None:
        where = _host(self.cfg.url)
        try:
            params = pika.URLParameters(self.cfg.url)
        except Exception as err:  # pika's parser raises whatever it meets
            raise BrokerError(f"invalid rabbitmq url {where!r}: {_reason(err)}") from None
        try:
            conn = pika.BlockingConnection(params)
        except (pika.exceptions.AMQPError, OSError) as err:
            raise BrokerError(f"cannot reach rabbitmq at {where}: {_reason(err)}") from None
        try:
            channel = conn.channel()
            channel.queue_declare(self.cfg.queue, durable=True)
            channel.basic_qos(prefetch_count=self.cfg.prefetch)
        except pika.exceptions.AMQPError as err:
            if conn.is_open:
                conn.close()
            raise BrokerError(f"rabbitmq queue {self.cfg.queue!r}: {_reason(err)}") from None
        self._conn, self._channel, self._consuming = conn, channel, False

    def _connected(self) -> None:
        if self._conn is None:
            self._connect()
            log.info("reconnected to rabbitmq at %s", _host(self.cfg.url))

    def _lost(self, err: Exception) -> None:
        """Forget the connection and what came through it (RabbitMQ delivers it again)."""
        log.warning("rabbitmq connection lost (%s); reconnecting on the next poll", _reason(err))
        self._inbox.clear()
        self._unacked = []
        self.close()

    def _on_message(self, _channel: Any, method: Any, properties: Any, body: bytes) -> None:
        base = properties.message_id or hashlib.sha256(body).hexdigest()
        self._inbox.append(_Message(int(method.delivery_tag), str(base), bytes(body)))

    # -- reading ----------------------------------------------------------------------------
    def _read(self) -> list[_Message]:
        n = self.cfg.batch_size
        if not self._consuming:
            self._channel.basic_consume(self.cfg.queue, self._on_message, auto_ack=False)
            self._consuming = True
        if not self._inbox:
            self._conn.process_data_events(time_limit=self.cfg.block_ms / 1000)
        while self._inbox and len(self._inbox) < n:
            before = len(self._inbox)
            self._conn.process_data_events(time_limit=_LINGER_S)  # returns on a delivery
            if len(self._inbox) == before:
                break
        return [self._inbox.popleft() for _ in range(min(n, len(self._inbox)))]

    # -- decoding ---------------------------------------------------------------------------
    def _batch(self, messages: list[_Message]) -> Batch:
        decoded: list[Decoded] = []
        for m in messages:
            obj, problem = load(m.body, f"message {m.base}", "the body")
            single = not isinstance(obj, list)
            rows: list[Row] = (
                [({}, problem)]
                if problem is not None
                else check_rows([obj] if single else obj, f"message {m.base}", self._allowed)
            )
            decoded.append(Decoded(m.base, single, rows))
        return to_batch(decoded, self.schema, origin=f"rabbitmq:{self.cfg.queue}")


def _host(url: str) -> str:
    """A URL without its credentials."""
    return url.split("@")[-1]


def _reason(err: BaseException) -> str:
    """An exception as one short line (pika's nest their cause, e.g. a refused socket)."""
    while True:
        inner = err.args[0] if err.args else getattr(err, "exception", None)
        if not isinstance(inner, BaseException):
            break
        err = inner
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:300]
