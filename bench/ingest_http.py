"""Benchmark (not a test): rows/s ingested over HTTP with the daemon and its detectors running.

Starts ``driftloop run`` as a real process (SQLite state, the API on a free local port,
``source: http``, ADWIN on the error signal and a KS test on all 20 features), trains v1
through the API, then drives ``POST /v1/ingest`` for S seconds with batches of 1,000
labelled rows × 20 features from a load generator in this process: pre-encoded bodies,
N keep-alive connections (one thread each, a request in flight per connection; row ids
are made by the server), first closed loop (flat out: the most rows/s), then, once the
detectors have caught up, open loop at ``--rate`` rows/s (50,000: the latency at the
target rate, from each batch's scheduled send time). Reports rows/s, batch latency
percentiles, CPU of the server and of the generator (cores: user+system CPU seconds /
wall seconds), the server's peak RSS, and the detectors' backlog when the load stops
(rows acknowledged but not yet through the detectors) with the time they then took to
catch up.

Baseline, same run, same generator: a bare uvicorn app (httptools, uvloop) that reads
each body and answers a fixed JSON: the ceiling this machine's HTTP and generator set.
The daemon runs once per ``--synchronous`` setting (SQLite ``full``: fsync per commit;
``normal``: durable against the process's death, not a power cut).

Detector settings (the JSON records them): ADWIN (delta 0.002) on the 0/1 error of every
labelled row; KS on all features, reference 2,000 rows, window 1,000, one test per 1,000
rows (``stride``), ``false_alarms_per_rows`` 10,000,000. The default budget (one false
alarm per 100,000 stationary rows) would mean an alarm every 2 s at 50,000 rows/s, each
running the alarm path (policy, events, reference refresh); evidently drift reports are
off for the same reason (seconds each, in the daemon's step thread).

Usage: python bench/ingest_http.py [--quick] [--seconds S] [--clients N] [--rate ROWS_S]
       [--synchronous full,normal] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
N_FEATURES = 20
BATCH = 1000
BOOT_BATCHES = 2  # 2,000 labelled rows → v1
WARM_BATCHES = 4
KS = {"reference_size": 2000, "window_size": 1000, "stride": 1000}
KS_BUDGET = 10_000_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(state: Path, port: int, synchronous: str) -> dict[str, Any]:
    return {
        "state_dir": str(state),
        "sqlite_synchronous": synchronous,
        "seed": 1,
        "schema": {"features": [f"f{i}" for i in range(N_FEATURES)], "classes": [0, 1]},
        "source": {"kind": "http"},
        "model": {"kind": "mlp", "hidden": [32]},
        "bootstrap": {"rows": BOOT_BATCHES * BATCH, "epochs": 5},
        "detectors": [
            {"kind": "adwin", "signal": "error", "delta": 0.002},
            {"kind": "ks", "signal": "features", **KS, "false_alarms_per_rows": KS_BUDGET},
        ],
        "reports": {"drift_html": False},
        "scheduler": {"tick_seconds": 0.2},
        "api": {"port": port},
    }


def _bodies(n: int, seed: int) -> list[bytes]:
    """``n`` distinct pre-encoded batches of one stationary concept."""
    rng = np.random.default_rng(seed)
    w = np.random.default_rng(0).normal(size=N_FEATURES)
    out = []
    for _ in range(n):
        x = rng.normal(size=(BATCH, N_FEATURES)).round(6)
        y = (x @ w > 0).astype(int)
        out.append(json.dumps({"rows": x.tolist(), "labels": y.tolist()}).encode())
    return out


HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}


def _post(conn: http.client.HTTPConnection, body: bytes) -> tuple[int, bytes]:
    conn.request("POST", "/v1/ingest", body=body, headers=HEADERS)
    r = conn.getresponse()
    return r.status, r.read()


def _get(port: int, path: str) -> Any:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path)
    return json.loads(c.getresponse().read())


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the server did not come up")


def drive(
    port: int,
    pid: int,
    bodies: list[bytes],
    seconds: float,
    clients: int,
    rate: float | None = None,
) -> dict[str, Any]:
    """N keep-alive clients for ``seconds``; latency, CPU and RSS.

    Closed loop (``rate`` None): each client sends its next batch when the last one is
    answered, so the server runs flat out. Open loop: batches go out on a fixed schedule
    of ``rate`` rows/s in all, and a batch's latency runs from its scheduled send time
    (a late send counts as waiting: no coordinated omission).
    """
    server, me = psutil.Process(pid), psutil.Process()
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    start = time.perf_counter()
    interval = clients * BATCH / rate if rate else 0.0

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        i = k
        due = start + k * interval / clients
        while not stop.is_set():
            if rate:
                time.sleep(max(0.0, due - time.perf_counter()))
            t0 = due if rate else time.perf_counter()
            status, body = _post(conn, bodies[i % len(bodies)])
            dt = time.perf_counter() - t0
            i += clients
            due += interval
            ok = status == 200 and json.loads(body).get("accepted") == BATCH
            with lock:
                (latencies.append(dt) if ok else errors.append(f"{status}: {body[:200]!r}"))

    peak_rss = server.memory_info().rss
    s0, m0 = server.cpu_times(), me.cpu_times()
    t0 = start
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    while time.perf_counter() - t0 < seconds:
        time.sleep(0.25)
        peak_rss = max(peak_rss, server.memory_info().rss)
    stop.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    s1, m1 = server.cpu_times(), me.cpu_times()
    lat = np.array(latencies) * 1000

    def cores(a: Any, b: Any) -> float:
        return round(float((b.user - a.user + b.system - a.system) / wall), 2)

    def pct(q: float) -> float | None:
        return round(float(np.percentile(lat, q)), 1) if len(lat) else None

    return {
        "mode": f"open loop at {rate:,.0f} rows/s" if rate else "closed loop",
        "seconds": round(wall, 2),
        "clients": clients,
        "batches": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "rows_per_s": round(len(latencies) * BATCH / wall),
        "latency_ms": {
            "p50": pct(50),
            "p90": pct(90),
            "p99": pct(99),
            "max": round(float(lat.max()), 1) if len(lat) else None,
        },
        "server_cpu_cores": cores(s0, s1),
        "server_cpu_ms_per_batch": round(cores(s0, s1) * wall * 1000 / max(1, len(latencies)), 2),
        "generator_cpu_cores": cores(m0, m1),
        "server_peak_rss_mib": round(peak_rss / 2**20),
    }


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_baseline(seconds: float, clients: int, bodies: list[bytes], tmp: Path) -> dict[str, Any]:
    port = _free_port()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--echo-server", str(port)]
    proc = _start(cmd, tmp / "echo.log", dict(os.environ))
    try:
        _wait_ready(port, proc)
        boot = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for b in bodies[:WARM_BATCHES]:
            assert _post(boot, b)[0] == 200
        return drive(port, proc.pid, bodies, seconds, clients)
    finally:
        _stop(proc)


def run_daemon(
    seconds: float,
    clients: int,
    bodies: list[bytes],
    tmp: Path,
    synchronous: str,
    rate: float | None,
) -> dict[str, Any]:
    port = _free_port()
    cfg_path = tmp / f"bench-{synchronous}.yaml"
    cfg_path.write_text(yaml.safe_dump(_config(tmp / f"state-{synchronous}", port, synchronous)))
    cmd = [sys.executable, "-m", "runtime.cli.main", "run", "--quiet", "--config", str(cfg_path)]
    proc = _start(cmd, tmp / f"daemon-{synchronous}.log", {**os.environ, "DRIFTLOOP_TOKEN": TOKEN})
    try:
        _wait_ready(port, proc)
        boot = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for b in _bodies(BOOT_BATCHES, seed=1):
            assert _post(boot, b)[0] == 200
        deadline = time.monotonic() + 300
        while _get(port, "/v1/status").get("champion") is None:
            if time.monotonic() > deadline:
                raise SystemExit("no champion after bootstrap")
            time.sleep(0.5)
        boot.close()  # a slow bootstrap outlasts the server's keep-alive: a new connection
        warm = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for b in bodies[:WARM_BATCHES]:  # imports, first model calls, SQLite pages
            assert _post(warm, b)[0] == 200
        warm.close()
        res = drive(port, proc.pid, bodies, seconds, clients)
        acknowledged = (BOOT_BATCHES + WARM_BATCHES + res["batches"]) * BATCH
        t0 = time.perf_counter()
        res["detector_backlog_rows_at_end"] = acknowledged - _get(port, "/v1/status")["rows_seen"]
        # /v1/status counts the stored rows: its own latency bounds the catch-up's resolution
        res["status_call_s"] = round(time.perf_counter() - t0, 2)
        while True:  # how long the detectors take to catch up once the load stops
            st = _get(port, "/v1/status")
            if st["rows_seen"] >= acknowledged or time.perf_counter() - t0 > 120:
                break
            time.sleep(0.05)
        res["detector_catch_up_s"] = round(time.perf_counter() - t0, 2)
        res["rows_seen_by_detectors"] = st["rows_seen"]
        res["rows_acknowledged"] = acknowledged
        res["monitor_dropped_rows"] = st.get("monitor_dropped_rows")
        alarms = _get(port, "/v1/events?kind=drift.detected&limit=1000")["events"]
        res["drift_alarms"] = len(alarms)
        res["synchronous"] = synchronous
        if rate:  # the same daemon, caught up, at the target rate
            paced = drive(port, proc.pid, bodies, seconds, clients, rate)
            acknowledged += paced["batches"] * BATCH
            paced["detector_backlog_rows_at_end"] = (
                acknowledged - _get(port, "/v1/status")["rows_seen"]
            )
            res["paced"] = paced
        return res
    finally:
        _stop(proc)


def echo_server(port: int) -> None:
    """The baseline: uvicorn (httptools, uvloop) reading each body, a fixed JSON answer."""
    import uvicorn

    answer = json.dumps(
        {"accepted": BATCH, "duplicates": 0, "rejected": 0, "first_seq": 1, "last_seq": BATCH}
    ).encode()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            msg = await receive()
            more = msg.get("more_body", False)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    uvicorn.run(
        app, host="127.0.0.1", port=port, http="httptools", loop="uvloop", log_level="warning"
    )


def _row(name: str, r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    return (
        f"| {name} | {r['rows_per_s']:,} | {lat['p50']} | {lat['p99']} | {lat['max']} | "
        f"{r['server_cpu_cores']} ({r['server_cpu_ms_per_batch']} ms/batch) | "
        f"{r['generator_cpu_cores']} | {r['server_peak_rss_mib']} | "
        f"{r.get('detector_backlog_rows_at_end', '–')} | {r.get('detector_catch_up_s', '–')} | "
        f"{r['errors']} |"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="5 s per run instead of 30 s")
    p.add_argument("--seconds", type=float)
    p.add_argument("--clients", type=int, default=2)
    p.add_argument("--synchronous", default="full,normal", help="SQLite settings to run")
    p.add_argument(
        "--rate",
        type=float,
        default=50_000,
        help="rows/s of the open-loop run after each closed-loop one (0: none)",
    )
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--json", type=Path)
    p.add_argument("--echo-server", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.echo_server:
        echo_server(args.echo_server)
        return
    seconds = args.seconds or (5.0 if args.quick else 30.0)
    tmp = Path(tempfile.mkdtemp(prefix="driftloop-bench-"))
    bodies = _bodies(16, seed=2)
    load_before = os.getloadavg()
    res: dict[str, Any] = {
        "machine": f"{platform.node()} ({os.cpu_count()} cores, {platform.machine()})",
        "load_average_before": [round(v, 2) for v in load_before],
        "batch_rows": BATCH,
        "features": N_FEATURES,
        "body_bytes": len(bodies[0]),
        "detectors": {
            "adwin": {"signal": "error", "delta": 0.002},
            "ks": {**KS, "budget": KS_BUDGET},
        },
        "runs": {},
    }
    if not args.no_baseline:
        res["runs"]["baseline_bare_uvicorn"] = run_baseline(seconds, args.clients, bodies, tmp)
    for sync in [s.strip() for s in args.synchronous.split(",") if s.strip()]:
        run = run_daemon(seconds, args.clients, bodies, tmp, sync, args.rate or None)
        res["runs"][f"driftloop_{sync}"] = run
        if "paced" in run:
            res["runs"][f"driftloop_{sync}_paced"] = run.pop("paced")
    res["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    print(f"machine {res['machine']}, load average before {res['load_average_before']}")
    print(f"{seconds:.0f} s per run, {args.clients} clients, batches of {BATCH} × {N_FEATURES}")
    print(
        "| run | rows/s | p50 ms | p99 ms | max ms | server CPU | generator CPU | RSS MiB "
        "| backlog rows | catch-up s | errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in res["runs"].items():
        print(_row(name, r))
    print("target (issue 6): ≥ 50,000 rows/s, p99 ≤ 50 ms, with the daemon and detectors")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
