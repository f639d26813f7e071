"""Benchmark (not a test): rows/s ingested over HTTP with the daemon and its detectors running.

Starts ``driftloop run`` as a real process (SQLite state with fsync on, the API on a free
local port, an ADWIN detector on the error signal and a KS test on all features), trains
v1 through the API, then drives ``POST /v1/ingest`` with batches of 1,000 labelled rows ×
20 features from a load generator in this process (pre-encoded bodies, keep-alive
connections, several in flight). Reports sustained rows/s, batch latency percentiles,
CPU (server and generator, in cores) and the server's peak RSS.

Usage: python bench/ingest_http.py [--quick] [--seconds S] [--clients N] [--json OUT.json]
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(state: Path, port: int) -> dict[str, Any]:
    return {
        "state_dir": str(state),
        "seed": 1,
        "schema": {"features": [f"f{i}" for i in range(N_FEATURES)], "classes": [0, 1]},
        "source": {"kind": "http"},
        "model": {"kind": "mlp", "hidden": [32]},
        "bootstrap": {"rows": 2000, "epochs": 5},
        "detectors": [
            {"kind": "adwin", "signal": "error", "delta": 0.002},
            {"kind": "ks", "signal": "features", "reference_size": 2000, "window_size": 1000, "stride": 1000, "false_alarms_per_rows": 10_000_000},
        ],
        "scheduler": {"tick_seconds": 0.2},
        "api": {"port": port},
    }


def _bodies(n: int, seed: int) -> list[bytes]:
    """``n`` distinct pre-encoded batches (row ids are generated server-side)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=N_FEATURES)
    out = []
    for _ in range(n):
        x = rng.normal(size=(BATCH, N_FEATURES)).round(6)
        y = (x @ w > 0).astype(int)
        out.append(json.dumps({"rows": x.tolist(), "labels": y.tolist()}).encode())
    return out


def _post(conn: http.client.HTTPConnection, body: bytes) -> tuple[int, bytes]:
    conn.request(
        "POST",
        "/v1/ingest",
        body=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
    )
    r = conn.getresponse()
    return r.status, r.read()


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"daemon exited with {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the API did not come up")


def _champion(port: int) -> str | None:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/v1/status")
    return json.loads(c.getresponse().read()).get("champion")


def run(seconds: float, clients: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="driftloop-bench-"))
    port = _free_port()
    cfg_path = tmp / "bench.yaml"
    cfg_path.write_text(yaml.safe_dump(_config(tmp / "state", port)))
    env = {**os.environ, "DRIFTLOOP_TOKEN": TOKEN}
    log = (tmp / "daemon.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "run", "--quiet", "--config", str(cfg_path)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_ready(port, proc)
        bodies = _bodies(16, seed=2)
        boot = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for b in _bodies(2, seed=1):  # 2,000 labelled rows → v1
            assert _post(boot, b)[0] == 200
        deadline = time.monotonic() + 300
        while _champion(port) is None:
            if time.monotonic() > deadline:
                raise SystemExit("no champion after bootstrap")
            time.sleep(0.5)
        boot = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for b in bodies[:4]:  # warm-up: imports, first model calls, SQLite pages
            assert _post(boot, b)[0] == 200

        server = psutil.Process(proc.pid)
        me = psutil.Process()
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()
        peak_rss = server.memory_info().rss

        def client(k: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            i = k
            while not stop.is_set():
                t0 = time.perf_counter()
                status, body = _post(conn, bodies[i % len(bodies)])
                dt = time.perf_counter() - t0
                i += clients
                with lock:
                    if status == 200 and json.loads(body)["accepted"] == BATCH:
                        latencies.append(dt)
                    else:
                        errors.append(f"{status}: {body[:200]!r}")

        s_cpu0, m_cpu0 = server.cpu_times(), me.cpu_times()
        t0 = time.perf_counter()
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
        s_cpu1, m_cpu1 = server.cpu_times(), me.cpu_times()
        status = json.loads(
            (lambda c: (c.request("GET", "/v1/status"), c.getresponse().read())[1])(
                http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            )
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()

    lat = np.array(latencies) * 1000
    rows_s = len(latencies) * BATCH / wall

    def cores(a: Any, b: Any) -> float:
        return float((b.user - a.user + b.system - a.system) / wall)

    return {
        "machine": f"{platform.node()} ({os.cpu_count()} cores, {platform.machine()})",
        "seconds": round(wall, 2),
        "clients": clients,
        "batch_rows": BATCH,
        "features": N_FEATURES,
        "batches": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "rows_per_s": round(rows_s),
        "latency_ms": {
            "p50": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
            "p90": round(float(np.percentile(lat, 90)), 1) if len(lat) else None,
            "p99": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
            "max": round(float(lat.max()), 1) if len(lat) else None,
        },
        "server_cpu_cores": round(cores(s_cpu0, s_cpu1), 2),
        "generator_cpu_cores": round(cores(m_cpu0, m_cpu1), 2),
        "server_peak_rss_mib": round(peak_rss / 2**20),
        "rows_seen_by_detectors": status.get("rows_seen"),
        "monitor_queue_rows": status.get("monitor_queue_rows"),
        "monitor_dropped_rows": status.get("monitor_dropped_rows"),
        "load_average_before": None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="5 s instead of 30 s")
    p.add_argument("--seconds", type=float)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    seconds = args.seconds or (5.0 if args.quick else 30.0)
    load = os.getloadavg()[0]
    res = run(seconds, args.clients)
    res["load_average_before"] = round(load, 2)
    lat = res["latency_ms"]
    print(f"machine                {res['machine']}  (1-min load before: {load:.2f})")
    print(
        f"batches                {res['batches']} × {BATCH} rows × {N_FEATURES} features, "
        f"{res['clients']} clients, {res['seconds']} s, {res['errors']} errors"
    )
    print(f"throughput             {res['rows_per_s']:>8} rows/s   (target ≥ 50,000)")
    print(
        f"batch latency (ms)     p50 {lat['p50']}  p90 {lat['p90']}  p99 {lat['p99']}  "
        f"max {lat['max']}   (target p99 ≤ 50)"
    )
    print(
        f"CPU (cores)            server {res['server_cpu_cores']}  "
        f"generator {res['generator_cpu_cores']}"
    )
    print(f"server peak RSS        {res['server_peak_rss_mib']} MiB")
    print(
        f"detectors saw          {res['rows_seen_by_detectors']} rows "
        f"(queue {res['monitor_queue_rows']}, dropped {res['monitor_dropped_rows']})"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
