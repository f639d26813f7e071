"""Benchmark (not a test): the loop on real drifting streams, through ``driftloop replay``.

For each stream (bench/streams.py: Electricity, covertype's first 50k rows, weather,
employment, flights; all shipped inside installed packages) the replay tool's comparison
runs for two configs: the defaults (a config naming only schema, source and bootstrap)
and the README's "own data" settings. Beside them, in
the same run and on the same rows (after the first ``bootstrap.rows``, which every model
learns from first): v1 never retrained, the same retrain job every n rows without the
gate at each config's number of retrains and twice it, and river's online learners as the
anchors (``StandardScaler | LogisticRegression``, ``ARFClassifier``) with the previous
row's label as the no-change baseline.

Usage: python bench/real_streams.py [--quick] [--streams a,b] [--json OUT.json]
(bench/install_streams.sh installs the packages that ship the data).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streams import STREAMS  # noqa: E402  (bench/, the script's own directory)

from runtime.config import DriftloopConfig, parse_config  # noqa: E402
from runtime.replay.compare import Options, periodic, run_schedule, summary  # noqa: E402
from runtime.replay.engine import RunResult, Schedule  # noqa: E402
from runtime.replay.stream import LoggedStream  # noqa: E402

BOOTSTRAP = 5000


def configs(frame: pd.DataFrame) -> dict[str, DriftloopConfig]:
    features = [c for c in frame.columns if c != "label"]
    classes = sorted(int(c) for c in frame["label"].unique())
    base = {
        "state_dir": "/tmp/unused",  # the replay runs in a state of its own
        "schema": {"features": features, "label": "label", "classes": classes},
        "source": {"kind": "directory", "path": "/tmp/unused-in"},
        "bootstrap": {"rows": BOOTSTRAP},
    }
    readme = {
        **base,
        "detectors": [{"kind": "adwin", "signal": "error"}, {"kind": "ks", "signal": "features"}],
        "policy": {"warmup_rows": 500, "min_samples": 1000, "cooldown_rows": 2000},
        "retrain": {"strategy": {"kind": "replay"},
                    "buffer": {"kind": "reservoir", "capacity": 5000}},
        "gate": {"max_forgetting": 0.02},
    }
    return {"defaults": parse_config(base), "README settings": parse_config(readme)}


def river_anchors(frame: pd.DataFrame, start: int) -> dict[str, float]:
    """Prequential accuracy after ``start`` of river's online learners (they learn the
    first ``start`` rows first) and of the previous row's label."""
    from river import compose, forest, linear_model, multiclass, preprocessing

    y = frame["label"].to_numpy()
    binary = len(np.unique(y)) == 2
    logreg: Any = linear_model.LogisticRegression()
    if not binary:
        logreg = multiclass.OneVsRestClassifier(logreg)
    models = {
        "river StandardScaler+LogisticRegression": compose.Pipeline(
            preprocessing.StandardScaler(), logreg),
        "river ARFClassifier": forest.ARFClassifier(seed=0),
    }
    rows = frame.drop(columns=["label"]).to_dict(orient="records")
    out = {}
    for name, model in models.items():
        t0 = time.perf_counter()
        hits = 0
        for i, (x, label) in enumerate(zip(rows, y, strict=True)):
            if i >= start:
                hits += model.predict_one(x) == label
            model.learn_one(x, label)
        out[name] = hits / (len(y) - start)
        out[f"{name} seconds"] = time.perf_counter() - t0
    out["previous row's label"] = float(np.mean(y[start:] == y[start - 1:-1]))
    return out


def bench_stream(name: str, frame: pd.DataFrame, opts: Options) -> dict[str, Any]:
    cfgs = configs(frame)
    first = next(iter(cfgs.values()))
    stream = LoggedStream(frame, first.schema)
    runs: list[tuple[str, RunResult]] = []
    never = run_schedule(first, stream, Schedule("never", gate=False, name="v1, never retrained"),
                         opts)
    runs.append(("v1, never retrained", never))
    for label, cfg in cfgs.items():
        loop = run_schedule(cfg, stream, Schedule("drift", name=f"driftloop, {label}"), opts)
        runs.append((loop.name, loop))
        k = len(loop.retrains)
        for n, what in ((k, "same"), (2 * k, "twice the")):
            if n:
                sched = periodic(n, loop.start, len(stream),
                                 f"periodic at {what} retrains ({label})")
                runs.append((sched.name, run_schedule(cfg, stream, sched, opts)))
        print(f"  {name}: {loop.name} {loop.accuracy:.4f} ({k} retrains)", flush=True)
    anchors = river_anchors(frame, never.start)
    return {"rows": len(frame), "features": frame.shape[1] - 1,
            "classes": int(frame["label"].nunique()), "bootstrap": never.start,
            "runs": [summary(r) for _, r in runs], "anchors": anchors}


def table(name: str, res: dict[str, Any]) -> str:
    lines = [f"### {name} ({res['rows']:,} rows, {res['features']} features, "
             f"{res['classes']} classes; scored after the first {res['bootstrap']:,})", "",
             "| run | prequential accuracy | retrains | promoted | refused | train s |",
             "|---|---|---|---|---|---|"]
    for r in res["runs"]:
        lines.append(f"| {r['name']} | {r['accuracy']:.4f} | {r['retrains']} | {r['promoted']} "
                     f"| {r['refused']} | {r['train_seconds']:.1f} |")
    for k, v in res["anchors"].items():
        if not k.endswith("seconds"):
            lines.append(f"| {k} | {v:.4f} | – | – | – | – |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="the first 12,000 rows of each stream")
    p.add_argument("--streams", default=",".join(STREAMS), help="comma-separated names")
    p.add_argument("--batch-rows", type=int, default=500, help="rows that arrive together")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    opts = Options(batch_rows=args.batch_rows)
    out: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "load_average": os.getloadavg()},
        "quick": args.quick, "batch_rows": args.batch_rows, "streams": {},
    }
    t0 = time.perf_counter()
    for name in args.streams.split(","):
        frame = STREAMS[name]()
        if args.quick:
            frame = frame.iloc[:12_000].reset_index(drop=True)
        res = bench_stream(name, frame, opts)
        out["streams"][name] = res
        print(table(name, res), "\n", flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(out, indent=2))
    out["seconds"] = time.perf_counter() - t0
    out["machine"]["load_average_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    print(f"whole run {out['seconds']:.0f} s")


if __name__ == "__main__":
    main()
