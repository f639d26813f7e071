"""A Redis Streams source (the one module that imports redis).

Entries are read through a consumer group, so several daemons share one stream. An
entry is acknowledged (``XACK``) only after the daemon has written its rows durably
(:meth:`RedisSource.ack`, called after ingest commits); an entry read but never
acknowledged — the daemon died in between — is read again: by this consumer from its
pending list when it restarts, or by another consumer of the group once it has been
idle for ``claim_idle_ms`` (``XAUTOCLAIM``). Delivery is therefore at least once, and
ingest is idempotent by row id, so each row is stored exactly once in effect.

Entry format: a field ``row`` holding one JSON object (features, optional label and row
id), or ``rows`` holding a JSON array of such objects. A row without an id gets
``<entry id>`` (or ``<entry id>:<i>`` in an array), which is stable across redelivery.
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from runtime.config import SchemaConfig
from runtime.intake.entries import Decoded, Row, allowed_keys, check_rows, load, to_batch
from runtime.intake.settings import RedisSourceConfig
from runtime.intake.sources import Batch
from runtime.store.lock import default_instance

log = logging.getLogger(__name__)

Entry = tuple[str, dict[str, str | None]]  # a field that is not UTF-8 is None


class BrokerError(RuntimeError):
    """The broker cannot be used (unreachable, wrong type of key)."""


class RedisSource:
    """Batches from a Redis stream through a consumer group; see the module docstring."""

    name = "redis"
    blocks_on_retrain = False

    def __init__(self, cfg: RedisSourceConfig, schema: SchemaConfig) -> None:
        self.cfg = cfg
        self.schema = schema
        self.consumer = cfg.consumer or default_instance()
        # bytes, decoded per field: an entry that is not UTF-8 must be quarantined, not
        # fail every read of the stream (it would stay pending and be read again forever)
        self.client: redis.Redis = redis.Redis.from_url(
            cfg.url, decode_responses=False, socket_timeout=max(5.0, cfg.block_ms / 1000 + 5)
        )
        self._allowed = allowed_keys(schema)
        self._unacked: list[str] = []
        self._backlog = True  # our own pending entries first (a restart after a crash)
        self._idle = False
        try:
            self.client.xgroup_create(cfg.stream, cfg.group, id="0", mkstream=True)
        except redis.ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise BrokerError(f"redis stream {cfg.stream!r}: {err}") from None
        except redis.ConnectionError as err:
            raise BrokerError(f"cannot reach redis at {cfg.url}: {err}") from None

    # -- Source ---------------------------------------------------------------------------
    def poll(self) -> Batch | None:
        if self._unacked:
            # the previous batch was never acknowledged (its ingest failed): read it again
            self._unacked = []
            self._backlog = True
        entries = self._read()
        if not entries:
            self._idle = True
            return None
        self._idle = False
        self._unacked = [eid for eid, _ in entries]
        return self._batch(entries)

    @property
    def cursor(self) -> int:
        """The broker keeps the position (acknowledged entries are not redelivered)."""
        return 0

    def ack(self, batch: Batch) -> None:
        """Acknowledge the entries of the last batch (its rows are stored)."""
        if self._unacked:
            self.client.xack(self.cfg.stream, self.cfg.group, *self._unacked)
            self._unacked = []

    def exhausted(self) -> bool:
        if not self.cfg.drain_when_empty or not self._idle or self._unacked:
            return False
        pending = self.client.xpending(self.cfg.stream, self.cfg.group)
        return int(pending["pending"]) == 0 and not self._unread()

    # -- reading ----------------------------------------------------------------------------
    def _read(self) -> list[Entry]:
        n = self.cfg.batch_size
        if self._backlog:
            mine = self._xread("0", n, block=None)
            if mine:
                return mine
            self._backlog = False
        claimed = self._claim(n)
        if claimed:
            return claimed
        return self._xread(">", n, block=self.cfg.block_ms or None)

    def _xread(self, start: str, count: int, block: int | None) -> list[Entry]:
        got: Any = self.client.xreadgroup(
            self.cfg.group, self.consumer, {self.cfg.stream: start}, count=count, block=block
        )
        if not got:
            return []
        _stream, entries = got[0]
        return _decoded(entries)

    def _claim(self, count: int) -> list[Entry]:
        got: Any = self.client.xautoclaim(
            self.cfg.stream,
            self.cfg.group,
            self.consumer,
            min_idle_time=self.cfg.claim_idle_ms,
            start_id="0-0",
            count=count,
        )
        entries = got[1] if got else []
        if entries:
            log.info("took over %d unacknowledged entries of another consumer", len(entries))
        return _decoded(entries)

    def _unread(self) -> bool:
        groups: Any = self.client.xinfo_groups(self.cfg.stream)
        for g in groups:
            if _text(g.get("name")) == self.cfg.group:
                lag = g.get("lag")
                return bool(lag) if lag is not None else False
        return False

    # -- decoding ---------------------------------------------------------------------------
    def _batch(self, entries: list[Entry]) -> Batch:
        decoded = [
            Decoded(eid, "row" in fields, self._decode(eid, fields)) for eid, fields in entries
        ]
        return to_batch(decoded, self.schema, origin=f"redis:{self.cfg.stream}")

    def _decode(self, eid: str, fields: dict[str, str | None]) -> list[Row]:
        where = f"entry {eid}"
        key = "row" if "row" in fields else "rows" if "rows" in fields else None
        if key is None:
            return [({}, f"{where} has no 'row' or 'rows' field")]
        obj, problem = load(fields[key], where, f"field {key!r}")
        if problem is not None:
            return [({}, problem)]
        items = obj if key == "rows" else [obj]
        if not isinstance(items, list):
            return [({}, f"{where}: 'rows' must be a JSON array")]
        return check_rows(items, where, self._allowed)

    def close(self) -> None:
        self.client.close()

    def lag(self) -> None:
        """No backlog to count here."""
        return None


def _text(value: Any) -> str | None:
    """A reply value as text; None if it is bytes that are not UTF-8."""
    if not isinstance(value, bytes):
        return None if value is None else str(value)
    try:
        return value.decode()
    except UnicodeDecodeError:
        return None


def _decoded(entries: Any) -> list[Entry]:
    """Stream entries with ids and fields as text (deleted entries, ``None``, skipped)."""
    out: list[Entry] = []
    for eid, fields in entries:
        if fields is None:
            continue
        text = {k.decode(errors="replace"): _text(v) for k, v in fields.items()}
        out.append((eid.decode(), text))
    return out
