"""Benchmark of the loop (not a test): prints a table and writes JSON.

1. rows/s through ingest + monitor + detect (the daemon's per-batch path, SQLite, fsync on);
2. drift-onset-to-promotion on the demo stream: seconds (and rows) from the first row of the
   new distribution to the ``model.promoted`` event;
3. retrain throughput: our replay strategy vs a plain PyTorch loop on the same model, batch
   composition (half new rows, half rehearsal) and data, in the same run.

Usage: python bench/loop.py [--quick] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runtime.config import parse_config  # noqa: E402
from runtime.daemon import Daemon  # noqa: E402
from runtime.intake.demo_stream import SyntheticSource  # noqa: E402
from runtime.store import events as ev  # noqa: E402
from runtime.store.db import Database, rows  # noqa: E402
from runtime.store.events import EventLog  # noqa: E402
from strategies import replay  # noqa: E402
from strategies.base import Budget, TrainRequest  # noqa: E402
from strategies.models import MLPConfig, build_model, fit_normalization  # noqa: E402


def demo_data() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())


def bench_ingest(n_rows: int, batch: int) -> dict[str, Any]:
    data = demo_data()
    with tempfile.TemporaryDirectory() as tmp:
        data["state_dir"] = tmp
        cfg = parse_config(data)
        daemon = Daemon(cfg)
        daemon.open()
        while daemon.unit is None:  # bootstrap v1 on the demo's first rows
            daemon.step()
        stationary = copy.deepcopy(data["source"])
        stationary["segments"] = [dict(data["source"]["segments"][0], rows=n_rows + 10_000)]
        stationary["batch_size"] = batch
        src = SyntheticSource(
            parse_config({**data, "source": stationary}).source,  # type: ignore[arg-type]
            cfg.schema,
            cursor=10_000,
        )  # fresh row ids past the bootstrap rows
        batches = [b for b in iter(src.poll, None)]
        t_ingest = t_monitor = 0.0
        n = 0
        start = time.perf_counter()
        for b in batches:
            t0 = time.perf_counter()
            acc = daemon.ingestor.ingest(b)
            t1 = time.perf_counter()
            daemon._after_ingest(acc)
            t2 = time.perf_counter()
            t_ingest += t1 - t0
            t_monitor += t2 - t1
            n += acc.count
        total = time.perf_counter() - start
        daemon.close("bench")
    return {
        "rows": n,
        "batch": batch,
        "seconds": total,
        "rows_per_s": n / total,
        "ingest_rows_per_s": n / t_ingest,
        "monitor_detect_rows_per_s": n / t_monitor,
    }


def bench_demo() -> dict[str, Any]:
    data = demo_data()
    with tempfile.TemporaryDirectory() as tmp:
        data["state_dir"] = tmp
        cfg = parse_config(data)
        t0 = time.perf_counter()
        Daemon(cfg).run(until_drained=True)
        wall = time.perf_counter() - t0
        db = Database.for_state_dir(cfg.state_dir, None)
        events = EventLog(db).list()
        drift_row_id = f"syn-{cfg.source.segments[0].rows}"  # type: ignore[union-attr]
        with db.connect() as conn:
            seq, ingested_at = conn.execute(
                rows.select()
                .with_only_columns(rows.c.seq, rows.c.ingested_at)
                .where(rows.c.row_id == drift_row_id)
            ).one()
        promoted = [e for e in events if e.kind == ev.MODEL_PROMOTED and e.model_version != "v1"]
        drifts = [
            e.payload for e in events
            if isinstance(e.payload, ev.DriftDetected) and e.payload.row >= seq
        ]
        finished = [e.payload for e in events if isinstance(e.payload, ev.RetrainFinished)]
        out: dict[str, Any] = {"demo_wall_seconds": wall, "drift_row": seq}
        if drifts:
            out["first_alarm_delay_rows"] = drifts[0].row - seq
            out["first_alarm_detector"] = drifts[0].detector
        if promoted:
            out["onset_to_promotion_seconds"] = _seconds(ingested_at, promoted[0].ts)
        if finished:
            out["retrain_seconds"] = finished[0].seconds
            out["retrain_wall_seconds"] = finished[0].wall_seconds
        db.dispose()
    return out


def _seconds(a: str, b: str) -> float:
    from datetime import datetime

    ta = datetime.fromisoformat(a.replace("Z", "+00:00"))
    tb = datetime.fromisoformat(b.replace("Z", "+00:00"))
    return (tb - ta).total_seconds()


def plain_loop(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    rx: torch.Tensor,
    ry: torch.Tensor,
    epochs: int,
    batch: int,
    lr: float,
    seed: int,
) -> int:
    """The baseline: a textbook PyTorch loop with the same batch composition."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    n_new = batch - batch // 2
    samples = 0
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), n_new):
            idx = perm[i : i + n_new]
            ridx = torch.randint(0, len(rx), (batch - len(idx),), generator=g)
            xb = torch.cat([x[idx], rx[ridx]])
            yb = torch.cat([y[idx], ry[ridx]])
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            samples += len(xb)
    return samples


def bench_retrain(n_new: int, n_buffer: int, epochs: int, repeats: int) -> dict[str, Any]:
    from strategies.registry import BufferConfig, build_buffer

    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_new, 9, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    rx = torch.randn(n_buffer, 9, generator=g)
    ry = (rx[:, 0] - rx[:, 2] > 0).long()
    buf = build_buffer(BufferConfig(capacity=n_buffer), seed=0)
    buf.add(rx, ry)
    rx, ry = buf.tensors()

    def fresh() -> torch.nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            m = build_model(MLPConfig(hidden=[64, 64]), 9, 2)
        fit_normalization(m, x)
        return m

    ours, base = [], []
    strategy = replay.build(replay.Config(lr=3e-3, batch_size=64, mix=0.5, patience=None))
    for _ in range(repeats):  # interleaved, best of N, so both see the same machine state
        m = fresh()
        t0 = time.perf_counter()
        res = strategy.train(TrainRequest(m, x, y, buffer=buf,
                                          budget=Budget(epochs=epochs, steps=None, seconds=None),
                                          seed=0, device="cpu"))
        ours.append(res.samples_processed / (time.perf_counter() - t0))
        m = fresh()
        t0 = time.perf_counter()
        s = plain_loop(m, x, y, rx, ry, epochs, 64, 3e-3, 0)
        base.append(s / (time.perf_counter() - t0))
    return {
        "rows_new": n_new,
        "rows_buffer": n_buffer,
        "epochs": epochs,
        "ours_samples_per_s": max(ours),
        "plain_samples_per_s": max(base),
        "ratio": max(ours) / max(base),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    results: dict[str, Any] = {
        "machine": {
            "cpu_count": __import__("os").cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "quick": args.quick,
    }
    results["ingest"] = bench_ingest(5_000 if args.quick else 20_000, 1000)
    results["retrain"] = bench_retrain(2800, 2000, 5 if args.quick else 20, 3)
    results["demo"] = bench_demo()

    i, r, d = results["ingest"], results["retrain"], results["demo"]
    nan = float("nan")
    rows = [
        ("ingest+monitor+detect rows/s (batch 1000)", f"{i['rows_per_s']:,.0f}", "-"),
        ("  ingest only (validate + durable append)", f"{i['ingest_rows_per_s']:,.0f}", "-"),
        ("  monitor + detectors only", f"{i['monitor_detect_rows_per_s']:,.0f}", "-"),
        (
            "retrain samples/s: replay vs plain loop",
            f"{r['ours_samples_per_s']:,.0f}",
            f"{r['plain_samples_per_s']:,.0f}  (ratio {r['ratio']:.2f})",
        ),
        ("demo: first alarm, rows after the drift", str(d.get("first_alarm_delay_rows", "-")), "-"),
        (
            "demo: drift onset → promotion, s",
            f"{d.get('onset_to_promotion_seconds', nan):.1f}",
            "-",
        ),
        (
            "demo: retrain s (in child / wall)",
            f"{d.get('retrain_seconds', nan):.1f}",
            f"{d.get('retrain_wall_seconds', nan):.1f}",
        ),
        ("demo: whole run, s", f"{d['demo_wall_seconds']:.1f}", "-"),
    ]
    print(f"{'measure':<46}{'driftloop':>14}  baseline")
    for name, ours, base in rows:
        print(f"{name:<46}{ours:>14}  {base}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
