"""The RabbitMQ source against the real local broker: ack after the durable write,
redelivery after a crash, late labels, bad messages quarantined, drain, and the daemon
fed through it end to end."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
import yaml
from sqlalchemy import select

from runtime.cli.main import main
from runtime.intake.demo_stream import AGRAWAL_FEATURES
from runtime.intake.ingest import Ingestor
from runtime.intake.rabbitmq_source import RabbitMQSource
from runtime.intake.redis_source import BrokerError
from runtime.intake.settings import RabbitMQSourceConfig
from runtime.store.db import Database, rows
from runtime.store.rows import labelled_rows
from runtime.training.worker import RetrainRunner
from tests.conftest import SMALL
from tests.runtime.processes import AGRAWAL_SCHEMA
from tests.runtime.processes import rows as synthetic

URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def _connect() -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.URLParameters(URL))


def _broker_up() -> str | None:
    """None once the broker answers (started if it was down), else why not."""
    try:
        _connect().close()
        return None
    except pika.exceptions.AMQPError as err:
        first = repr(err)
    if shutil.which("rabbitmq-server") is None:
        return f"rabbitmq not reachable at 127.0.0.1:5672 ({first}) and no rabbitmq-server"
    subprocess.run(["rabbitmq-server", "-detached"], capture_output=True, check=False)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            _connect().close()
            return None
        except pika.exceptions.AMQPError:
            time.sleep(0.5)
    return f"rabbitmq not reachable at 127.0.0.1:5672 ({first}); rabbitmq-server -detached failed"


@pytest.fixture(scope="module")
def broker() -> None:
    why = _broker_up()
    if why is not None:
        pytest.skip(why)


@pytest.fixture
def queue(broker: None) -> Iterator[str]:
    name = f"driftloop-test-{uuid.uuid4().hex[:10]}"
    conn = _connect()
    conn.channel().queue_declare(name, durable=True)
    yield name
    conn.channel().queue_delete(name)
    conn.close()


def _send(
    queue: str, bodies: list[bytes | str], message_ids: list[str | None] | None = None
) -> None:
    conn = _connect()
    ch = conn.channel()
    for body, mid in zip(bodies, message_ids or [None] * len(bodies), strict=True):
        props = pika.BasicProperties(delivery_mode=2, message_id=mid)
        ch.basic_publish("", queue, body.encode() if isinstance(body, str) else body, props)
    conn.close()


def _row(i: int, seed: int = 1, prefix: str = "r", label: bool = True) -> dict[str, Any]:
    x, y = synthetic(i + 1, seed)[i]
    row: dict[str, Any] = dict(zip(AGRAWAL_FEATURES, x, strict=True))
    if label:
        row["class"] = int(y)
    row["row_id"] = f"{prefix}{i}"
    return row


def _publish(queue: str, n: int, seed: int = 1, prefix: str = "r") -> None:
    data = synthetic(n, seed)
    bodies: list[bytes | str] = []
    for i, (x, y) in enumerate(data):
        row = {**dict(zip(AGRAWAL_FEATURES, x, strict=True)), "class": int(y)}
        bodies.append(json.dumps({**row, "row_id": f"{prefix}{i}"}))
    _send(queue, bodies)


_opened: list[RabbitMQSource] = []


@pytest.fixture(autouse=True)
def _close_sources() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


def _source(queue: str, **kw: Any) -> RabbitMQSource:
    kw = {"batch_size": 25, "prefetch": 100, "block_ms": 200, **kw}
    src = RabbitMQSource(RabbitMQSourceConfig(queue=queue, **kw), AGRAWAL_SCHEMA)
    _opened.append(src)
    return src


def _ready(queue: str) -> int:
    conn = _connect()
    try:
        return int(conn.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        conn.close()


def test_batches_are_acknowledged_only_after_the_write(queue: str, ingestor: Ingestor) -> None:
    _publish(queue, 60)
    src = _source(queue)
    batch = src.poll()
    assert batch is not None and len(batch.frame) == 25
    assert batch.origin == f"rabbitmq:{queue}"
    acc = ingestor.ingest(batch)
    src.ack(batch)
    total = acc.count
    while (b := src.poll()) is not None:
        total += ingestor.ingest(b).count
        src.ack(b)
    src.close()
    assert total == 60 and _ready(queue) == 0  # all acknowledged: nothing came back


def test_a_crash_before_the_ack_redelivers_and_ingest_dedupes(
    queue: str, ingestor: Ingestor
) -> None:
    _publish(queue, 30)
    first = _source(queue)
    batch = first.poll()
    assert batch is not None
    ingestor.ingest(batch)  # stored, then the daemon dies before basic.ack
    first.close()
    assert _ready(queue) == 30  # RabbitMQ put back all it had sent ahead
    again = _source(queue)  # this or another consumer: the same messages, the same ids
    redelivered = again.poll()
    assert redelivered is not None
    assert list(redelivered.frame["row_id"]) == list(batch.frame["row_id"])
    acc = ingestor.ingest(redelivered)
    again.ack(redelivered)
    assert acc.count == 0 and acc.duplicates == 25  # exactly once in effect
    rest = again.poll()
    assert rest is not None and len(rest.frame) == 5
    assert ingestor.ingest(rest).count == 5
    again.ack(rest)
    again.close()
    assert _ready(queue) == 0


def test_late_labels_join_and_default_ids_survive_redelivery(
    queue: str, ingestor: Ingestor
) -> None:
    unlabelled = [_row(i, label=False) for i in range(4)]
    no_id = {k: v for k, v in _row(4, label=False).items() if k != "row_id"}
    array = [{k: v for k, v in _row(i).items() if k != "row_id"} for i in (5, 6)]
    _send(
        queue,
        [json.dumps(r) for r in unlabelled]
        + [json.dumps(no_id), json.dumps({**no_id, "class": 1}), json.dumps(array)]
        + [json.dumps({"row_id": "r1", "class": 0}), json.dumps([{"row_id": "r3", "class": 1}])],
        message_ids=[None] * 4 + ["m-4", None, None, None, None],
    )
    src = _source(queue)
    first = src.poll()
    assert first is not None
    src.close()  # a crash: the ids must come back the same
    src = _source(queue)
    batch = src.poll()
    assert batch is not None
    assert list(batch.frame["row_id"]) == list(first.frame["row_id"])
    acc = ingestor.ingest(batch)
    src.ack(batch)
    src.close()
    digest = hashlib.sha256(json.dumps(array).encode()).hexdigest()
    hashed = hashlib.sha256(json.dumps({**no_id, "class": 1}).encode()).hexdigest()
    assert acc.row_ids == ["r0", "r1", "r2", "r3", "m-4", hashed, f"{digest}:0", f"{digest}:1"]
    assert len(acc.labels_joined) == 2 and acc.rejected == 0
    _seqs, _, y = labelled_rows(ingestor.db, len(AGRAWAL_FEATURES), since=0)
    assert len(y) == 5  # r1 and r3 by their late labels, the hashed row and the array's two
    assert _ready(queue) == 0


def test_bad_messages_are_quarantined_with_their_reason_and_good_ones_stored(
    queue: str, ingestor: Ingestor
) -> None:
    good = _row(0)
    _send(
        queue,
        [
            json.dumps(good),
            "{broken",
            b"\xff\xfe not utf-8",
            json.dumps({**_row(1), "colour": "red"}),
            json.dumps({**_row(2), "salary": 10**400}),
            json.dumps([_row(3), 5]),
            "7",
            json.dumps(_row(4)),
        ],
    )
    src = _source(queue, drain_when_empty=True)
    batch = src.poll()  # one batch: nothing raises, nothing blocks the queue
    assert batch is not None
    acc = ingestor.ingest(batch)
    src.ack(batch)
    assert acc.count == 3 and acc.rejected == 6
    assert sorted(acc.row_ids) == ["r0", "r3", "r4"]
    reasons = [batch.row_errors[n] for n in sorted(batch.row_errors)]
    assert "is not valid JSON" in reasons[0]
    assert "the body is not valid UTF-8" in reasons[1]
    assert "unexpected key(s) 'colour'" in reasons[2]
    assert "number too large in 'salary'" in reasons[3]
    assert reasons[4].endswith("a row must be a JSON object")  # 5 in an array
    assert reasons[5].endswith("a row must be a JSON object")  # 7
    assert all(r.startswith("message ") for r in reasons)
    event = ingestor.events.list(kinds=["ingest.rejected"])[-1]
    assert event.raw["rejected"] == 6 and set(event.raw["reasons"]) == set(reasons)
    assert src.poll() is None and src.exhausted() and _ready(queue) == 0
    src.close()


def test_drain_when_empty(queue: str, ingestor: Ingestor) -> None:
    _publish(queue, 5)
    src = _source(queue, drain_when_empty=True)
    assert not src.exhausted()
    batch = src.poll()
    assert batch is not None
    assert not src.exhausted()  # read but not acknowledged
    ingestor.ingest(batch)
    src.ack(batch)
    assert src.poll() is None
    assert src.exhausted()
    _publish(queue, 1, prefix="late-")
    assert not src.exhausted()  # a new message: not drained after all
    later = src.poll()
    assert later is not None and list(later.frame["row_id"]) == ["late-0"]
    src.ack(later)
    src.close()


def _config(tmp_path: Path, source: dict[str, Any]) -> Path:
    data = copy.deepcopy(SMALL)
    data.update(state_dir=str(tmp_path / "state"), source=source)
    path = tmp_path / "driftloop.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_run_until_drained_stores_every_message_once(
    queue: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    """The daemon fed through the queue (fewer rows than bootstrap needs: no training)."""
    # no retrain can start without a champion: skip warming the worker (seconds of imports)
    monkeypatch.setattr(RetrainRunner, "warm", lambda self: None)
    _publish(queue, 150)
    _publish(queue, 20, prefix="r")  # the same rows again (a publisher's retry)
    source = {"kind": "rabbitmq", "url": URL, "queue": queue, "batch_size": 40, "prefetch": 80}
    cfg = _config(tmp_path, {**source, "block_ms": 50, "drain_when_empty": True})
    assert main(["run", "--config", str(cfg), "--until-drained", "--quiet"]) == 0
    capsys.readouterr()
    db = Database.for_state_dir(tmp_path / "state", None)
    with db.connect() as conn:
        stored = [r[0] for r in conn.execute(select(rows.c.row_id))]
    db.dispose()
    assert sorted(stored) == sorted(f"r{i}" for i in range(150))
    assert _ready(queue) == 0


def test_an_unreachable_broker_is_one_line(
    broker: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "amqp://guest:secret@127.0.0.1:1/%2F"
    with pytest.raises(BrokerError) as info:
        RabbitMQSource(RabbitMQSourceConfig(url=url), AGRAWAL_SCHEMA)
    message = str(info.value)
    assert message.startswith("cannot reach rabbitmq at 127.0.0.1:1/%2F: ")
    assert "\n" not in message and "secret" not in message
    cfg = _config(tmp_path, {"kind": "rabbitmq", "url": url})
    assert main(["run", "--config", str(cfg), "--until-drained"]) == 1
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and "cannot reach rabbitmq at 127.0.0.1:1" in err, err


def test_validate_with_the_rabbitmq_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path, {"kind": "rabbitmq", "url": URL, "queue": "orders"})
    assert main(["validate", str(cfg)]) == 0
    out, _ = capsys.readouterr()
    assert "source: rabbitmq queue 'orders' at 127.0.0.1:5672/%2F" in out
    assert "guest" not in out
    for source, expected in [
        ({"kind": "rabbitmq", "queue": "q", "exchange": "x"}, "unknown key 'source.exchange'"),
        ({"kind": "rabbitmq", "prefetch": 10}, "prefetch (10) must be at least batch_size"),
        ({"kind": "rabbitmq", "url": "redis://h"}, "'source.url': must start with amqp://"),
    ]:
        cfg = _config(tmp_path, source)
        assert main(["validate", str(cfg)]) == 2
        _, err = capsys.readouterr()
        assert err.count("\n") == 1 and expected in err, err
