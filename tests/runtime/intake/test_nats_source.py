"""The NATS JetStream source against the local server (127.0.0.1:4222): ack after the
durable write, redelivery after a crash stored once, default ids, bad messages
quarantined and acknowledged, drain, lag, and the daemon fed through it end to end."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
import yaml
from sqlalchemy import select

from runtime.cli.main import main
from runtime.intake.demo_stream import AGRAWAL_FEATURES
from runtime.intake.ingest import Ingestor
from runtime.intake.nats_source import NatsSource, consumer_lag
from runtime.intake.redis_source import BrokerError
from runtime.intake.settings import NatsSourceConfig
from runtime.store.db import Database, quarantine, rows
from runtime.training.worker import RetrainRunner
from tests.conftest import SMALL
from tests.runtime.processes import AGRAWAL_SCHEMA
from tests.runtime.processes import rows as synthetic

URL = "nats://127.0.0.1:4222"


async def _ignore(_err: BaseException) -> None:
    return None


async def _connect() -> Any:
    return await nats.connect(URL, allow_reconnect=False, connect_timeout=2, error_cb=_ignore)


@pytest.fixture(scope="module")
def server() -> None:
    async def ping() -> None:
        nc = await asyncio.wait_for(_connect(), 5)
        await nc.jetstream().account_info()
        await nc.close()

    try:
        asyncio.run(ping())
    except Exception as err:  # not reachable, or without JetStream
        pytest.skip(f"NATS with JetStream not reachable at {URL}: {err!r}")


@pytest.fixture
def stream(server: None) -> Iterator[str]:
    name = f"driftloop-test-{uuid.uuid4().hex[:10]}"

    async def create() -> None:
        nc = await _connect()
        await nc.jetstream().add_stream(name=name, subjects=[f"{name}.rows"])
        await nc.close()

    async def delete() -> None:
        nc = await _connect()
        await nc.jetstream().delete_stream(name)
        await nc.close()

    asyncio.run(create())
    yield name
    asyncio.run(delete())


def send(stream: str, bodies: list[bytes | str], msg_ids: list[str | None] | None = None) -> None:
    async def go() -> None:
        nc = await _connect()
        js = nc.jetstream()
        for body, mid in zip(bodies, msg_ids or [None] * len(bodies), strict=True):
            data = body.encode() if isinstance(body, str) else body
            await js.publish(f"{stream}.rows", data, headers={"Nats-Msg-Id": mid} if mid else None)
        await nc.close()

    asyncio.run(go())


def _row(i: int, prefix: str = "r", label: bool = True) -> dict[str, Any]:
    x, y = synthetic(i + 1, 1)[i]
    row: dict[str, Any] = dict(zip(AGRAWAL_FEATURES, x, strict=True))
    if label:
        row["class"] = int(y)
    row["row_id"] = f"{prefix}{i}"
    return row


def publish(stream: str, n: int, prefix: str = "r") -> None:
    data = synthetic(n, 1)
    bodies: list[bytes | str] = []
    for i, (x, y) in enumerate(data):
        row = {**dict(zip(AGRAWAL_FEATURES, x, strict=True)), "class": int(y)}
        bodies.append(json.dumps({**row, "row_id": f"{prefix}{i}"}))
    send(stream, bodies)


def pending(stream: str, durable: str = "driftloop") -> tuple[int, int]:
    """The consumer's (undelivered, delivered and unacknowledged) counts."""

    async def go() -> tuple[int, int]:
        nc = await _connect()
        info = await nc.jetstream().consumer_info(stream, durable)
        await nc.close()
        return int(info.num_pending), int(info.num_ack_pending)

    return asyncio.run(go())


_opened: list[NatsSource] = []


@pytest.fixture(autouse=True)
def _close_sources() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


def _source(stream: str, **kw: Any) -> NatsSource:
    kw = {"batch_size": 25, "block_ms": 200, **kw}
    cfg = NatsSourceConfig(url=URL, stream=stream, subject=f"{stream}.rows", **kw)
    src = NatsSource(cfg, AGRAWAL_SCHEMA)
    _opened.append(src)
    return src


def test_batches_are_acknowledged_only_after_the_write(stream: str, ingestor: Ingestor) -> None:
    publish(stream, 60)
    src = _source(stream)
    batch = src.poll()
    assert batch is not None and len(batch.frame) == 25
    assert batch.origin == f"nats:{stream}"
    assert pending(stream) == (35, 25)  # delivered, not yet acknowledged
    total = ingestor.ingest(batch).count
    src.ack(batch)
    assert pending(stream) == (35, 0)  # flushed: the server has the acks
    while (b := src.poll()) is not None:
        total += ingestor.ingest(b).count
        src.ack(b)
    assert total == 60 and pending(stream) == (0, 0)
    src.close()
    assert _source(stream).poll() is None  # a restart: nothing comes back


def test_a_crash_before_the_ack_redelivers_and_ingest_dedupes(
    stream: str, ingestor: Ingestor
) -> None:
    publish(stream, 30)
    first = _source(stream, ack_wait_seconds=1)
    batch = first.poll()
    assert batch is not None
    ingestor.ingest(batch)  # stored, then the daemon dies before the ack
    first.close()
    time.sleep(1.5)  # ack_wait passes: the server delivers them again
    again = _source(stream, ack_wait_seconds=1)
    redelivered = again.poll()
    assert redelivered is not None
    assert list(redelivered.frame["row_id"]) == list(batch.frame["row_id"])
    acc = ingestor.ingest(redelivered)
    again.ack(redelivered)
    assert acc.count == 0 and acc.duplicates == 25  # exactly once in effect
    rest = again.poll()
    assert rest is not None and ingestor.ingest(rest).count == 5
    again.ack(rest)
    assert pending(stream) == (0, 0)


def test_default_ids_are_the_msg_id_or_the_sha256(stream: str, ingestor: Ingestor) -> None:
    no_id = {k: v for k, v in _row(0, label=False).items() if k != "row_id"}
    array = [{k: v for k, v in _row(i).items() if k != "row_id"} for i in (1, 2)]
    bodies = [json.dumps(no_id), json.dumps({**no_id, "class": 1}), json.dumps(array)]
    send(stream, list(bodies), ["m-0", None, None])
    src = _source(stream)
    batch = src.poll()
    assert batch is not None
    acc = ingestor.ingest(batch)
    src.ack(batch)
    hashed = hashlib.sha256(bodies[1].encode()).hexdigest()
    digest = hashlib.sha256(bodies[2].encode()).hexdigest()
    assert acc.row_ids == ["m-0", hashed, f"{digest}:0", f"{digest}:1"]
    late: list[bytes | str] = [json.dumps({"row_id": "m-0", "class": 1})]
    send(stream, late)  # a late label joins the row by its id
    b = src.poll()
    assert b is not None and len(ingestor.ingest(b).labels_joined) == 1


def test_bad_messages_are_quarantined_and_acknowledged(stream: str, ingestor: Ingestor) -> None:
    send(
        stream,
        [
            json.dumps(_row(0)),
            "{broken",
            b"\xff\xfe not utf-8",
            json.dumps({**_row(1), "colour": "red"}),
            json.dumps([_row(2), 5]),
            json.dumps(_row(3)),
        ],
    )
    src = _source(stream, drain_when_empty=True)
    batch = src.poll()
    assert batch is not None
    acc = ingestor.ingest(batch)
    src.ack(batch)
    assert acc.count == 3 and acc.rejected == 4
    reasons = [batch.row_errors[n] for n in sorted(batch.row_errors)]
    assert "is not valid JSON" in reasons[0]
    assert "the data is not valid UTF-8" in reasons[1]
    assert "unexpected key(s) 'colour'" in reasons[2]
    assert reasons[3].endswith("a row must be a JSON object")
    assert pending(stream) == (0, 0)  # poison acknowledged: never delivered again
    assert src.poll() is None and src.exhausted()


def test_drain_when_empty_and_lag(stream: str, ingestor: Ingestor) -> None:
    publish(stream, 5)
    src = _source(stream, drain_when_empty=True, batch_size=3)
    assert not src.exhausted()
    batch = src.poll()
    assert batch is not None
    assert src.lag() == {stream: 5}  # 2 pending, 3 delivered and not acknowledged
    assert consumer_lag(src.cfg) == {stream: 5}
    assert not src.exhausted()
    ingestor.ingest(batch)
    src.ack(batch)
    rest = src.poll()
    assert rest is not None
    ingestor.ingest(rest)
    src.ack(rest)
    assert src.poll() is None and src.exhausted()
    assert consumer_lag(src.cfg) == {stream: 0}
    publish(stream, 1, prefix="late-")
    assert not src.exhausted()
    later = src.poll()
    assert later is not None and list(later.frame["row_id"]) == ["late-0"]
    src.ack(later)


def test_a_missing_stream_is_created(server: None) -> None:
    name = f"driftloop-new-{uuid.uuid4().hex[:8]}"
    src = _source(name)
    try:
        assert src.poll() is None
        publish(name, 2)
        b = src.poll()
        assert b is not None and len(b.frame) == 2
        src.ack(b)
    finally:
        src.close()

        async def delete() -> None:
            nc = await _connect()
            await nc.jetstream().delete_stream(name)
            await nc.close()

        asyncio.run(delete())


def _config(tmp_path: Path, source: dict[str, Any]) -> Path:
    data = copy.deepcopy(SMALL)
    data.update(state_dir=str(tmp_path / "state"), source=source)
    path = tmp_path / "driftloop.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_run_until_drained_stores_every_message_once(
    stream: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    """The daemon fed through the stream (fewer rows than bootstrap needs: no training)."""
    monkeypatch.setattr(RetrainRunner, "warm", lambda self: None)
    publish(stream, 150)
    publish(stream, 20)  # the same rows again (a publisher's retry)
    send(stream, ["not json"])
    source = {"kind": "nats", "url": URL, "stream": stream, "subject": f"{stream}.rows"}
    cfg = _config(tmp_path, {**source, "batch_size": 40, "block_ms": 50, "drain_when_empty": True})
    assert main(["run", "--config", str(cfg), "--until-drained", "--quiet"]) == 0
    capsys.readouterr()
    db = Database.for_state_dir(tmp_path / "state", None)
    with db.connect() as conn:
        stored = [r[0] for r in conn.execute(select(rows.c.row_id))]
        bad = conn.execute(select(quarantine.c.reason)).all()
    db.dispose()
    assert sorted(stored) == sorted(f"r{i}" for i in range(150))
    assert len(bad) == 1 and "is not valid JSON" in bad[0][0]
    assert pending(stream) == (0, 0)


def test_an_unreachable_server_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "nats://user:secret@127.0.0.1:1"
    cfg = NatsSourceConfig(url=url, connect_timeout_seconds=1)
    with pytest.raises(BrokerError) as info:
        NatsSource(cfg, AGRAWAL_SCHEMA)
    message = str(info.value)
    assert message.startswith("cannot reach nats at 127.0.0.1:1: ")
    assert "\n" not in message and "secret" not in message
    path = _config(tmp_path, {"kind": "nats", "url": url, "connect_timeout_seconds": 1})
    assert main(["run", "--config", str(path), "--until-drained"]) == 1
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and "cannot reach nats at 127.0.0.1:1" in err, err


def test_validate_with_the_nats_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path, {"kind": "nats", "url": "nats://u:p@h:4222", "stream": "orders"})
    assert main(["validate", str(cfg)]) == 0
    out, _ = capsys.readouterr()
    assert "source: nats stream 'orders' (consumer 'driftloop') at h:4222" in out
    assert "u:p" not in out
    cases: list[tuple[dict[str, Any], str]] = [
        ({"kind": "nats", "queue": "q"}, "unknown key 'source.queue'"),
        ({"kind": "nats", "url": "amqp://h"}, "'source.url': must start with nats://"),
    ]
    for source, expected in cases:
        cfg = _config(tmp_path, source)
        assert main(["validate", str(cfg)]) == 2
        _, err = capsys.readouterr()
        assert err.count("\n") == 1 and expected in err, err
