"""The Redis Streams source against the real server: consumer group, ack after the
durable write, redelivery after a crash, takeover of a dead consumer's entries."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from runtime.intake.demo_stream import AGRAWAL_FEATURES
from runtime.intake.ingest import Ingestor
from runtime.intake.redis_source import RedisSource
from runtime.intake.settings import RedisSourceConfig
from tests.runtime.processes import AGRAWAL_SCHEMA
from tests.runtime.processes import rows as synthetic

URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def stream() -> Iterator[str]:
    client = redis.Redis.from_url(URL)
    try:
        client.ping()
    except redis.ConnectionError as err:
        pytest.skip(f"redis not reachable at {URL}: {err}")
    name = f"driftloop-test-{uuid.uuid4().hex[:10]}"
    yield name
    client.delete(name)
    client.close()


def _publish(stream: str, n: int, seed: int = 1, prefix: str = "r") -> None:
    client = redis.Redis.from_url(URL)
    for i, (x, y) in enumerate(synthetic(n, seed)):
        row: dict[str, Any] = dict(zip(AGRAWAL_FEATURES, x, strict=True))
        row["class"] = int(y)
        row["row_id"] = f"{prefix}{i}"
        client.xadd(stream, {"row": json.dumps(row)})
    client.close()


def _source(stream: str, consumer: str, **kw: Any) -> RedisSource:
    cfg = RedisSourceConfig(stream=stream, consumer=consumer, batch_size=25, block_ms=50, **kw)
    return RedisSource(cfg, AGRAWAL_SCHEMA)


def _pending(stream: str) -> int:
    client = redis.Redis.from_url(URL)
    try:
        return int(client.xpending(stream, "driftloop")["pending"])
    finally:
        client.close()


def test_batches_are_acknowledged_only_after_the_write(stream: str, ingestor: Ingestor) -> None:
    _publish(stream, 60)
    src = _source(stream, "a")
    batch = src.poll()
    assert batch is not None and len(batch.frame) == 25
    assert _pending(stream) == 25  # read, not yet acknowledged
    acc = ingestor.ingest(batch)
    src.ack(batch)
    assert acc.count == 25 and _pending(stream) == 0
    total = acc.count
    while (b := src.poll()) is not None:
        total += ingestor.ingest(b).count
        src.ack(b)
    assert total == 60 and _pending(stream) == 0
    src.close()


def test_a_crash_before_the_ack_redelivers_and_ingest_dedupes(
    stream: str, ingestor: Ingestor
) -> None:
    _publish(stream, 30)
    first = _source(stream, "a")
    batch = first.poll()
    assert batch is not None
    ingestor.ingest(batch)  # stored, then the daemon dies before XACK
    first.close()
    again = _source(stream, "a")  # the same consumer restarts: its pending entries first
    redelivered = again.poll()
    assert redelivered is not None
    assert list(redelivered.frame["row_id"]) == list(batch.frame["row_id"])
    acc = ingestor.ingest(redelivered)
    again.ack(redelivered)
    assert acc.count == 0 and acc.duplicates == 25  # exactly once in effect
    rest = again.poll()
    assert rest is not None and len(rest.frame) == 5
    again.ack(rest)
    again.close()


def test_another_consumer_takes_over_a_dead_ones_entries(stream: str) -> None:
    _publish(stream, 10)
    dead = _source(stream, "dead")
    assert dead.poll() is not None  # read and never acknowledged
    alive = _source(stream, "alive", claim_idle_ms=1)
    import time

    time.sleep(0.01)
    taken = alive.poll()
    assert taken is not None and len(taken.frame) == 10
    alive.ack(taken)
    assert _pending(stream) == 0
    dead.close()
    alive.close()


def test_bad_entries_become_row_errors_and_ids_default_to_entry_ids(
    stream: str, ingestor: Ingestor
) -> None:
    client = redis.Redis.from_url(URL)
    good = dict(zip(AGRAWAL_FEATURES, synthetic(1, 3)[0][0], strict=True))
    eid = client.xadd(stream, {"row": json.dumps(good)}).decode()
    client.xadd(stream, {"row": "{broken"})
    client.xadd(stream, {"other": "1"})
    client.xadd(stream, {"row": json.dumps({**good, "colour": "red"})})
    client.xadd(stream, {"rows": json.dumps([good, good])})
    client.close()
    src = _source(stream, "a")
    batch = src.poll()
    assert batch is not None
    acc = ingestor.ingest(batch)
    src.ack(batch)
    assert acc.count == 3 and acc.rejected == 3
    assert eid in acc.row_ids
    reasons = " ".join(batch.row_errors.values())
    assert "not valid JSON" in reasons and "no 'row'" in reasons and "colour" in reasons
    src.close()


def test_poison_entries_are_quarantined_with_their_reason_not_read_forever(
    stream: str, ingestor: Ingestor
) -> None:
    client = redis.Redis.from_url(URL)
    good = dict(zip(AGRAWAL_FEATURES, synthetic(1, 3)[0][0], strict=True))
    client.xadd(stream, {"row": b"\xff\xfe not utf-8"})
    client.xadd(stream, {"row": json.dumps({**good, "salary": 10**400})})
    client.xadd(stream, {"rows": json.dumps({"not": "an array"})})
    client.close()
    src = _source(stream, "a", drain_when_empty=True)
    batch = src.poll()  # used to raise UnicodeDecodeError / OverflowError on every read
    assert batch is not None
    acc = ingestor.ingest(batch)
    src.ack(batch)
    assert acc.count == 0 and acc.rejected == 3 and _pending(stream) == 0
    events = ingestor.events.list(kinds=["ingest.rejected"])
    reasons = [e["reason"] for e in events[-1].raw["examples"]]
    assert "field 'row' is not valid UTF-8" in reasons[0]
    assert "number too large in 'salary'" in reasons[1]
    assert "'rows' must be a JSON array" in reasons[2]
    assert src.poll() is None and src.exhausted()
    src.close()


def test_drain_when_empty(stream: str, ingestor: Ingestor) -> None:
    _publish(stream, 5)
    src = _source(stream, "a", drain_when_empty=True)
    assert not src.exhausted()
    batch = src.poll()
    assert batch is not None
    assert not src.exhausted()  # read but not acknowledged
    ingestor.ingest(batch)
    src.ack(batch)
    assert src.poll() is None
    assert src.exhausted()
    src.close()
