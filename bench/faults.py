"""Fault campaign (not a test): kill -9 the daemon at random points of each phase, restart
it, and check what must survive.

One daemon (``driftloop run``, HTTP source, API, export and a webhook) runs on one state
directory; this process feeds it rows over HTTP that drift back and forth (so it
retrains, gates and promotes again and again; each trial past ``ingest`` also asks for a
retrain through ``POST /v1/retrain``) and records every row id the API acknowledged.
Each trial aims at a phase and kills the daemon's own process (SIGKILL, as the OOM
killer would; its worker is left to notice) at a random point of it:

- ``ingest``: 0-1.5 s into feeding (100 rows every 0.25 s, with ids, labelled);
- ``retrain``: 0-1 s after a ``retrain.started``;
- ``gate``: at a ``retrain.finished`` (the gate runs next), 0-50 ms after;
- ``promotion``: as soon as a ``model.promoted`` is seen (the event log polled every 5 ms);
- ``export``: 0-0.5 s after a ``model.promoted`` (the export runs then);
- ``hook``: 0-0.3 s after a ``model.promoted`` or ``gate.*`` (a webhook is owed).

A phase whose event does not come within ``--phase-timeout`` seconds is killed anyway
and counted as not reached. After each kill, with the daemon dead: every acknowledged
row is stored exactly once, ``PRAGMA integrity_check`` is ok, the champion's files
verify and load, no trigger was promoted twice, and no process of the daemon's (its
worker, their children) is alive 5 s after the kill. Then the daemon is restarted (the
next trial's run) and must come up. Leftover processes are killed after being counted.

Usage: python bench/faults.py [--trials 200] [--quick] [--json OUT.json] [--seed 0]
[--parallel K] (K campaigns side by side, seeds seed..seed+K-1, trials split between them)
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import platform
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runtime.intake.demo_stream import AGRAWAL_FEATURES, segment_rows  # noqa: E402
from runtime.intake.settings import Segment  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faults_checks import PHASES, check_state, table  # noqa: E402
from faults_parallel import run_parallel  # noqa: E402

FLIP_BATCHES = 30  # the concept flips every 3,000 rows: young customers, then old, ...
TOKEN = "faults-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Receiver(http.server.ThreadingHTTPServer):
    """A webhook receiver that answers 200 to everything."""

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.daemon_threads = True
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


def _config(work: Path, port: int, hook_url: str) -> dict[str, Any]:
    return {
        "state_dir": str(work / "state"),
        "seed": 3,
        "schema": {"features": list(AGRAWAL_FEATURES), "label": "class", "classes": [0, 1]},
        "source": {"kind": "http"},
        "model": {"kind": "mlp", "hidden": [16]},
        "bootstrap": {"rows": 600, "epochs": 20},
        "detectors": [{"kind": "adwin", "signal": "error", "delta": 0.01}],
        "policy": {"warmup_rows": 100, "min_samples": 300, "cooldown_rows": 300},
        "retrain": {
            "strategy": {"kind": "finetune", "lr": 0.005, "batch_size": 64},
            "buffer": {"kind": "reservoir", "capacity": 600},
            "budget": {"epochs": 2, "seconds": 5},
            "timeout_seconds": 60,
        },
        "gate": {"min_gain": 0.0, "min_accuracy": 0.5, "max_forgetting": 0.5},
        "scheduler": {"tick_seconds": 0.1},
        "api": {"port": port},
        "export": {"dir": str(work / "exports"), "formats": ["safetensors"], "keep": 2},
        "hooks": [
            {
                "name": "ops",
                "on": ["model.promoted", "gate.failed", "gate.passed"],
                "url": hook_url,
                "backoff_seconds": 0.2,
                "max_backoff_seconds": 1.0,
                "retries": 50,
                "timeout_seconds": 2,
            }
        ],
    }


class Feeder(threading.Thread):
    """Posts batches of rows whose concept flips every :data:`FLIP_BATCHES` (the
    champion, fine-tuned on one, errs on the other: drift, again and again); keeps the
    ids the API acknowledged."""

    def __init__(self, url: str, seed: int) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.rng = random.Random(seed)
        self.acked: set[str] = set()
        self.sent = 0
        self.stop = threading.Event()
        self.batch = 0

    def run(self) -> None:
        while not self.stop.is_set():
            self.post_one()
            self.stop.wait(0.25)

    def post_one(self) -> bool:
        self.batch += 1
        age = (20, 40) if (self.batch // FLIP_BATCHES) % 2 == 0 else (60, 81)
        seg = Segment(rows=100, function=1, where={"age": age})
        got = list(segment_rows(seg, seed=self.rng.randrange(2**31)))
        ids = [f"b{self.batch}-{i}-{self.rng.randrange(10**9)}" for i in range(len(got))]
        body = {"rows": [r[0] for r in got], "labels": [int(r[1]) for r in got], "row_ids": ids}
        req = urllib.request.Request(
            f"{self.url}/v1/ingest",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            method="POST",
        )
        self.sent += len(ids)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                if r.status == 200:
                    self.acked.update(ids)
                    return True
        except (urllib.error.URLError, OSError, ValueError):
            pass  # not acknowledged: may or may not be stored; never counted
        return False


class Daemon:
    """``driftloop run`` in its own process group."""

    def __init__(self, work: Path, cfg: dict[str, Any]) -> None:
        self.path = work / "faults.yaml"
        self.path.write_text(yaml.safe_dump(cfg))
        self.log = work / "daemon.log"
        self.url = f"http://127.0.0.1:{cfg['api']['port']}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180) -> float:
        env = {**os.environ, "DRIFTLOOP_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
        t0 = time.monotonic()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "runtime.cli.main", "run", "--config", str(self.path)],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited with {self.proc.returncode} on start")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as r:
                    if r.status == 200:
                        return time.monotonic() - t0
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the daemon did not answer within {timeout} s")

    def tree(self) -> list[psutil.Process]:
        """The daemon and every process below it."""
        assert self.proc is not None
        try:
            top = psutil.Process(self.proc.pid)
            return [top, *top.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> list[psutil.Process]:
        """SIGKILL the daemon's process alone (as the OOM killer would); returns the
        processes that were below it."""
        assert self.proc is not None
        below = self.tree()[1:]
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        return below

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            below = self.tree()[1:]
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            _reap(below, 5)


def _reap(procs: list[psutil.Process], grace: float) -> int:
    """Wait ``grace`` s for ``procs`` to end; kill those left; returns how many were left."""
    deadline = time.monotonic() + grace
    alive = procs
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _alive(p)]
        time.sleep(0.05)
    alive = [p for p in alive if _alive(p)]
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    return len(alive)


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Events:
    """Tails the event log by id (a read-only SQLite connection per poll)."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.last = 0

    def new(self) -> list[tuple[int, str]]:
        if not self.db.exists():
            return []
        try:
            conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=1)
            try:
                got = conn.execute(
                    "SELECT id, kind FROM events WHERE id > ? ORDER BY id", (self.last,)
                ).fetchall()
            finally:
                conn.close()
        except sqlite3.Error:
            return []
        if got:
            self.last = got[-1][0]
        return [(int(i), str(k)) for i, k in got]

    def skip(self) -> None:
        self.new()


def _wait_for(events: Events, kinds: tuple[str, ...], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(k in kinds or k.split(".")[0] in kinds for _, k in events.new()):
            return True
        time.sleep(0.005)
    return False


def _retrain(url: str, n: int) -> None:
    """Ask for a retrain (``POST /v1/retrain``), so that the later phases come without
    waiting for a drift; a refusal (no champion yet, one pending) is fine."""
    req = urllib.request.Request(
        f"{url}/v1/retrain",
        data=json.dumps({"reason": f"fault trial {n}"}).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        method="POST",
    )
    with contextlib.suppress(urllib.error.URLError, OSError):
        urllib.request.urlopen(req, timeout=10).close()


def _aim(phase: str, events: Events, rng: random.Random, timeout: float, url: str, n: int) -> bool:
    """Sleep until the random kill point of ``phase``; False if its event never came."""
    events.skip()
    if phase != "ingest":
        _retrain(url, n)
    if phase == "ingest":
        time.sleep(rng.uniform(0, 1.5))
        return True
    if phase == "retrain":
        ok = _wait_for(events, ("retrain.started",), timeout)
        time.sleep(rng.uniform(0, 1.0))
        return ok
    if phase == "gate":
        ok = _wait_for(events, ("retrain.finished",), timeout)
        time.sleep(rng.uniform(0, 0.05))
        return ok
    if phase == "promotion":
        return _wait_for(events, ("model.promoted",), timeout)
    if phase == "export":
        ok = _wait_for(events, ("model.promoted",), timeout)
        time.sleep(rng.uniform(0, 0.5))
        return ok
    ok = _wait_for(events, ("model.promoted", "gate"), timeout)
    time.sleep(rng.uniform(0, 0.3))
    return ok


def campaign(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="driftloop-faults-"))
    rx = _Receiver()
    cfg = _config(work, _free_port(), rx.url)
    daemon = Daemon(work, cfg)
    state = work / "state"
    events = Events(state / "driftloop.db")
    trials: list[dict[str, Any]] = []
    feeder = Feeder(daemon.url, args.seed)
    t_start = time.monotonic()
    try:
        startup = daemon.start()
        feeder.start()
        for n in range(args.trials):
            if time.monotonic() - t_start > args.max_minutes * 60:
                print(f"stopping after {n} trials: --max-minutes {args.max_minutes}", flush=True)
                break
            phase = PHASES[n % len(PHASES)]
            reached = _aim(phase, events, rng, args.phase_timeout, daemon.url, n)
            t_kill = time.monotonic()
            below = daemon.kill()
            feeder_acked = set(feeder.acked)  # rows acknowledged before the kill
            left = _reap(below, 5.0)
            failures = check_state(state, feeder_acked)
            if left:
                failures["leftover_processes"] = left
            try:
                restart = daemon.start()
            except RuntimeError as err:
                failures["restart"] = str(err)
                restart = None
            trials.append(
                {
                    "trial": n,
                    "phase": phase,
                    "reached": reached,
                    "kill_at_s": round(t_kill - t_start, 2),
                    "workers_below": len(below),
                    "restart_s": None if restart is None else round(restart, 2),
                    "failures": failures,
                }
            )
            mark = "ok" if not failures else f"FAIL {failures}"
            print(f"{n:>4} {phase:<10} reached={reached!s:<5} {mark}", flush=True)
            if args.json:  # as it goes, so that a campaign cut short keeps its figures
                args.json.write_text(json.dumps({"trials": trials}, indent=1))
            if "restart" in failures:
                break
    finally:
        feeder.stop.set()
        daemon.stop()
        rx.shutdown()
    return {
        "startup_s": round(startup, 2),
        "rows_acknowledged": len(feeder.acked),
        "rows_sent": feeder.sent,
        "wall_s": round(time.monotonic() - t_start, 1),
        "trials": trials,
        "work": str(work),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="6 trials: one per phase")
    ap.add_argument("--phase-timeout", type=float, default=75.0)
    ap.add_argument("--max-minutes", type=float, default=600.0, help="stop starting trials")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--parallel", type=int, default=1, help="campaigns side by side")
    args = ap.parse_args(argv)
    if args.quick:
        args.trials = min(args.trials, len(PHASES))
    result = run_parallel(args) if args.parallel > 1 else campaign(args)
    text, summary = table(result)
    result["summary"] = summary
    result["machine"] = {
        "cpus": os.cpu_count(),
        "load_avg": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    print(text)
    print(
        f"{result['rows_acknowledged']} rows acknowledged of {result['rows_sent']} sent; "
        f"wall {result['wall_s']} s; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 1 if summary["all"]["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
