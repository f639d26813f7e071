"""A NATS JetStream source (the one module that imports nats).

Messages are read from ``stream`` (created for ``subject`` if missing) by the durable pull
consumer ``durable`` with explicit acknowledgement. The messages of a batch are
acknowledged only after the daemon has written their rows durably
(:meth:`NatsSource.ack`, called after ingest commits), and the acknowledgements are
flushed to the server before ``ack`` returns. A message delivered and not acknowledged —
the daemon died in between — is delivered again by the server after ``ack_wait_seconds``,
and ingest is idempotent by row id, so each row is stored exactly once in effect.

Message format: the data is one JSON object (features, optional label and row id) or a
JSON array of such objects, UTF-8. A row without an id gets the message's
``Nats-Msg-Id`` header when the publisher set one (JetStream's own de-duplication key),
else the sha256 of the data (hex); the i-th row of an array gets that plus ``:i``. Without
ids, identical bodies are therefore one row. A message that cannot be used is quarantined
with its reason and acknowledged like any other, so it is never delivered again.

nats-py is asyncio; the source runs a private event loop in a thread of its own (the
client's pings and reconnects run there between polls) and waits on it from the daemon's
thread. A lost connection is re-established by the client; a server that cannot be
reached at start is a :class:`~runtime.intake.redis_source.BrokerError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any, TypeVar

import nats
import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NotFoundError

from runtime.config import SchemaConfig
from runtime.intake.entries import Decoded, Row, allowed_keys, check_rows, load, to_batch
from runtime.intake.redis_source import BrokerError
from runtime.intake.settings import NatsSourceConfig
from runtime.intake.sources import Batch

log = logging.getLogger(__name__)
logging.getLogger("nats").setLevel(logging.CRITICAL)  # errors come to error_cb, as one line

T = TypeVar("T")
_LAG_EVERY_S = 2.0  # the consumer's pending counts are asked for at most this often
_REPEAT_S = 60.0


class NatsSource:
    """Batches from a JetStream durable pull consumer; see the module docstring."""

    name = "nats"
    blocks_on_retrain = False

    def __init__(self, cfg: NatsSourceConfig, schema: SchemaConfig) -> None:
        self.cfg = cfg
        self.schema = schema
        self._allowed = allowed_keys(schema)
        self._nc: Any = None
        self._sub: Any = None
        self._inbox: deque[Any] = deque()
        self._unacked: list[Any] = []
        self._idle = False
        self._lag: dict[str, int] = {}
        self._lag_at = -_LAG_EVERY_S
        self._logged: dict[str, float] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nats", daemon=True)
        self._thread.start()
        try:
            self._call(self._open(), cfg.connect_timeout_seconds + 10)
        except BaseException:
            self.close()
            raise

    # -- Source ---------------------------------------------------------------------------
    def poll(self) -> Batch | None:
        if self._unacked:
            # the previous batch was never acknowledged (its ingest failed): read it again
            self._inbox.extendleft(reversed(self._unacked))
            self._unacked = []
        messages = self._read()
        if time.monotonic() - self._lag_at >= _LAG_EVERY_S:
            self._refresh_lag()
        if not messages:
            self._idle = True
            return None
        self._idle = False
        self._unacked = messages
        return self._batch(messages)

    @property
    def cursor(self) -> int:
        """The server keeps the position (acknowledged messages are not redelivered)."""
        return 0

    def ack(self, batch: Batch) -> None:
        """Acknowledge the messages of the last batch and flush (their rows are stored)."""
        if not self._unacked:
            return
        messages, self._unacked = self._unacked, []
        try:
            self._call(self._ack_all(messages), self.cfg.connect_timeout_seconds + 10)
        except (nats.errors.Error, TimeoutError, OSError) as err:
            # the server delivers them again after ack_wait; ingest skips the stored rows
            self._warn(f"acknowledgement failed ({_reason(err)}); they will be redelivered")

    def exhausted(self) -> bool:
        if not self.cfg.drain_when_empty or not self._idle or self._unacked or self._inbox:
            return False
        try:
            info = self._call(self._sub.consumer_info(), self.cfg.connect_timeout_seconds)
        except (nats.errors.Error, TimeoutError, OSError) as err:
            self._warn(f"consumer info failed ({_reason(err)})")
            return False
        return int(info.num_pending) == 0 and int(info.num_ack_pending) == 0

    def lag(self) -> dict[str, int]:
        """Messages not yet acknowledged (pending plus delivered), keyed by the stream."""
        return dict(self._lag)

    def close(self) -> None:
        """Close the connection and stop the loop; what is not acknowledged comes again."""
        nc, self._nc = self._nc, None
        if nc is not None and self._loop.is_running():
            with contextlib.suppress(Exception):  # closing anyway
                self._call(nc.close(), 10)
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if not self._loop.is_running() and not self._loop.is_closed():
            self._loop.close()

    # -- the event loop ---------------------------------------------------------------------
    def _call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _open(self) -> None:
        cfg = self.cfg
        where = _host(cfg.url)
        errors: list[BaseException] = []

        async def on_error(err: BaseException) -> None:
            if self._nc is None:
                errors.append(err)  # while connecting: the reason of the one-line error
            else:
                self._warn(f"connection error ({_reason(err)})")

        async def on_disconnect() -> None:
            if self._nc is not None:
                self._warn(f"disconnected from {where}; reconnecting")

        try:
            nc = await asyncio.wait_for(
                nats.connect(
                    cfg.url,
                    error_cb=on_error,
                    disconnected_cb=on_disconnect,
                    connect_timeout=max(1, int(cfg.connect_timeout_seconds)),
                    max_reconnect_attempts=-1,  # once connected, keep trying for ever
                    reconnect_time_wait=1,
                ),
                cfg.connect_timeout_seconds,
            )
        except (TimeoutError, OSError, nats.errors.Error) as err:
            why = _reason(errors[0] if errors else err)
            raise BrokerError(f"cannot reach nats at {where}: {why}") from None
        self._nc = nc
        try:
            self._sub = await self._subscribe(nc)
        except (TimeoutError, nats.errors.Error) as err:
            raise BrokerError(f"nats stream {cfg.stream!r}: {_reason(err)}") from None

    async def _subscribe(self, nc: Any) -> Any:
        cfg = self.cfg
        js = nc.jetstream()
        try:
            await js.stream_info(cfg.stream)
        except NotFoundError:
            await js.add_stream(name=cfg.stream, subjects=[cfg.subject])
            log.info("created nats stream %r for subject %r", cfg.stream, cfg.subject)
        consumer = ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=cfg.ack_wait_seconds,
            max_ack_pending=max(1000, 2 * cfg.batch_size),
        )
        return await js.pull_subscribe(
            cfg.subject, durable=cfg.durable, stream=cfg.stream, config=consumer
        )

    async def _fetch(self, n: int) -> list[Any]:
        try:
            return list(await self._sub.fetch(n, timeout=max(self.cfg.block_ms, 1) / 1000))
        except nats.errors.TimeoutError:
            return []

    async def _ack_all(self, messages: list[Any]) -> None:
        for m in messages:
            with contextlib.suppress(nats.errors.MsgAlreadyAckdError):
                await m.ack()
        await self._nc.flush(timeout=self.cfg.connect_timeout_seconds)

    # -- reading ----------------------------------------------------------------------------
    def _read(self) -> list[Any]:
        n = self.cfg.batch_size
        if len(self._inbox) < n:
            try:
                got = self._call(self._fetch(n - len(self._inbox)), self.cfg.block_ms / 1000 + 10)
            except (nats.errors.Error, TimeoutError, OSError) as err:
                self._warn(f"fetch failed ({_reason(err)})")
                got = []
            self._inbox.extend(got)
        return [self._inbox.popleft() for _ in range(min(n, len(self._inbox)))]

    def _refresh_lag(self) -> None:
        self._lag_at = time.monotonic()
        try:
            info = self._call(self._sub.consumer_info(), self.cfg.connect_timeout_seconds)
        except (nats.errors.Error, TimeoutError, OSError):
            return  # the last known lag stays
        self._lag = {self.cfg.stream: int(info.num_pending) + int(info.num_ack_pending)}

    def _warn(self, text: str) -> None:
        now = time.monotonic()
        if now - self._logged.get(text, -_REPEAT_S) >= _REPEAT_S:
            log.warning("nats: %s", text)
            self._logged[text] = now

    # -- decoding ---------------------------------------------------------------------------
    def _batch(self, messages: list[Any]) -> Batch:
        decoded: list[Decoded] = []
        for m in messages:
            data = bytes(m.data or b"")
            base = (m.headers or {}).get("Nats-Msg-Id") or hashlib.sha256(data).hexdigest()
            obj, problem = load(data, f"message {base}", "the data")
            single = not isinstance(obj, list)
            rows: list[Row] = (
                [({}, problem)]
                if problem is not None
                else check_rows([obj] if single else obj, f"message {base}", self._allowed)
            )
            decoded.append(Decoded(str(base), single, rows))
        return to_batch(decoded, self.schema, origin=f"nats:{self.cfg.stream}")


def consumer_lag(cfg: NatsSourceConfig) -> dict[str, int]:
    """The durable consumer's pending plus unacknowledged messages, asked of the server
    (``driftloop status``); raises :class:`BrokerError` if it cannot be asked."""

    async def ask() -> dict[str, int]:
        try:
            nc = await asyncio.wait_for(
                nats.connect(cfg.url, allow_reconnect=False, error_cb=_ignore),
                cfg.connect_timeout_seconds,
            )
        except (TimeoutError, OSError, nats.errors.Error) as err:
            raise BrokerError(f"cannot reach nats at {_host(cfg.url)}: {_reason(err)}") from None
        try:
            info = await nc.jetstream().consumer_info(cfg.stream, cfg.durable)
        except NotFoundError:
            return {}
        except (TimeoutError, nats.errors.Error) as err:
            raise BrokerError(f"nats consumer {cfg.durable!r}: {_reason(err)}") from None
        finally:
            await nc.close()
        return {cfg.stream: int(info.num_pending) + int(info.num_ack_pending)}

    return asyncio.run(ask())


async def _ignore(_err: BaseException) -> None:
    return None


def _host(url: str) -> str:
    """A URL without its credentials."""
    return url.split("@")[-1]


def _reason(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:300]
