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

Per stream and config the JSON also holds the verdict: per seed the gain over v1, over
periodic retraining at the same number of retrains, the share of candidates the gate
refused and the gap to the best river learner that ran; over the seeds the gain over
periodic as mean ± standard error with ``runtime.replay.seeds``' verdict (ahead / behind /
within noise, from three seeds on).

Usage: python bench/real_streams.py [--quick] [--streams a,b] [--configs defaults]
[--anchors all|fast|none] [--no-twice] [--seeds 0,1] [--json OUT.json]
(bench/install_streams.sh installs the packages that ship the data; ``--anchors fast``
leaves out ARF, which takes most of a full run's time).
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
from runtime.replay.compare import (  # noqa: E402
    BASELINES,
    Options,
    periodic,
    run_schedule,
    summary,
)
from runtime.replay.engine import RunResult, Schedule  # noqa: E402
from runtime.replay.seeds import Gain, parse_seeds, seeded  # noqa: E402
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


def river_anchors(frame: pd.DataFrame, start: int, which: str = "all") -> dict[str, float]:
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
    if which != "all":
        models.pop("river ARFClassifier")
    if which == "none":
        models = {}
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


def verdict(loop: RunResult, never: RunResult, same: RunResult | None,
            anchors: dict[str, float]) -> dict[str, Any]:
    """How one seed's loop fares against v1, periodic at its N, and river."""
    river = {k: v for k, v in anchors.items() if k.startswith("river") and "seconds" not in k}
    best = max(river, key=lambda k: river[k]) if river else None
    k = len(loop.retrains)
    return {
        "accuracy": round(loop.accuracy, 4), "retrains": k,
        "gain_over_v1": round(loop.accuracy - never.accuracy, 4),
        "gain_over_periodic_same": None if same is None else round(
            loop.accuracy - same.accuracy, 4),
        "refused_share": round(loop.count("refused") / k, 3) if k else None,
        "best_river": best,
        "gap_to_best_river": None if best is None else round(loop.accuracy - river[best], 4),
    }


def over_seeds(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The seeds' gains over periodic at the same N, in points: mean ± s.e., verdict."""
    values = [v["gain_over_periodic_same"] for v in per_seed.values()]
    if any(v is None for v in values):
        return {"per_seed": values, "verdict": "no retrains"}
    g = Gain(BASELINES[1], tuple(100 * v for v in values))
    return {"per_seed": [round(v, 2) for v in g.per_seed], "mean": round(g.mean, 2),
            "se": None if g.se is None else round(g.se, 2), "verdict": g.verdict}


def bench_stream(name: str, frame: pd.DataFrame, opts: Options, only: list[str] | None = None,
                 anchors_kind: str = "all", twice: bool = True,
                 seeds: tuple[int, ...] = (0,)) -> dict[str, Any]:
    """Every config's loop and its periodic baselines, once per retrain seed (the seed
    moves a loop's score against periodic by up to a point: one seed is one draw)."""
    cfgs = {k: v for k, v in configs(frame).items() if only is None or k in only}
    first = next(iter(cfgs.values()))
    stream = LoggedStream(frame, first.schema)
    runs: list[tuple[str, RunResult]] = []
    never = run_schedule(first, stream, Schedule("never", gate=False, name="v1, never retrained"),
                         opts)
    runs.append(("v1, never retrained", never))
    verdicts: dict[str, dict[int, dict[str, Any]]] = {label: {} for label in cfgs}
    anchors = river_anchors(frame, never.start, anchors_kind)
    for seed in seeds:
        for label, base in cfgs.items():
            loop, same = seed_runs(seeded(base, seed), stream, opts, label, seed, twice, runs)
            verdicts[label][seed] = verdict(loop, never, same, anchors)
            print(f"  {name}: {loop.name} {loop.accuracy:.4f} ({len(loop.retrains)} retrains, "
                  f"{loop.by_trigger()})"
                  + ("" if same is None else f", periodic same N {same.accuracy:.4f}"),
                  flush=True)
    return {"rows": len(frame), "features": frame.shape[1] - 1,
            "classes": int(frame["label"].nunique()), "bootstrap": never.start,
            "seeds": list(seeds), "runs": [summary(r) for _, r in runs], "anchors": anchors,
            "verdict": {label: {"per_seed": {str(s): v for s, v in by_seed.items()},
                                "over_periodic_same": over_seeds(by_seed)}
                        for label, by_seed in verdicts.items()}}


def seed_runs(cfg: DriftloopConfig, stream: LoggedStream, opts: Options, label: str, seed: int,
              twice: bool, runs: list[tuple[str, RunResult]]
              ) -> tuple[RunResult, RunResult | None]:
    """One seed's loop and periodic at its N (and twice it), appended to ``runs``."""
    label = label if seed == 0 else f"{label}, seed {seed}"
    loop = run_schedule(cfg, stream, Schedule("drift", name=f"driftloop, {label}"), opts)
    runs.append((loop.name, loop))
    k = len(loop.retrains)
    same = None
    for n, what in ((k, "same"), (2 * k if twice else 0, "twice the")):
        if n:
            sched = periodic(n, loop.start, len(stream), f"periodic at {what} retrains ({label})")
            got = run_schedule(cfg, stream, sched, opts)
            runs.append((sched.name, got))
            same = got if what == "same" else same
    return loop, same


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
    lines += ["", "| config | loop minus periodic at its N, per seed (points) | mean ± s.e. "
              "| verdict |", "|---|---|---|---|"]
    for label, v in res["verdict"].items():
        o = v["over_periodic_same"]
        seeds = " / ".join("–" if g is None else f"{g:+.2f}" for g in o["per_seed"])
        mean = "" if "mean" not in o else f"{o['mean']:+.2f}" + (
            "" if o["se"] is None else f" ± {o['se']:.2f}")
        lines.append(f"| {label} | {seeds} | {mean} | {o['verdict']} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="the first 12,000 rows of each stream")
    p.add_argument("--streams", default=",".join(STREAMS), help="comma-separated names")
    p.add_argument("--batch-rows", type=int, default=500, help="rows that arrive together")
    p.add_argument("--configs", help="comma-separated: defaults, README settings (default both)")
    p.add_argument("--anchors", choices=["all", "fast", "none"], default="all",
                   help="river learners: all, fast (no ARF), none")
    p.add_argument("--no-twice", action="store_true", help="no periodic run at twice the N")
    p.add_argument("--rows", type=int, help="the first N rows of each stream (--quick: 12,000)")
    p.add_argument("--seeds", default="0", help="retrain seeds, comma-separated (e.g. 0,1)")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    seeds = parse_seeds(args.seeds)
    only = None if not args.configs else args.configs.split(",")
    opts = Options(batch_rows=args.batch_rows)
    out: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "load_average": os.getloadavg()},
        "quick": args.quick, "rows": args.rows, "batch_rows": args.batch_rows,
        "configs": only, "anchors": args.anchors, "seeds": list(seeds), "streams": {},
    }
    t0 = time.perf_counter()
    for name in args.streams.split(","):
        frame = STREAMS[name]()
        limit = args.rows or (12_000 if args.quick else None)
        if limit:
            frame = frame.iloc[:limit].reset_index(drop=True)
        res = bench_stream(name, frame, opts, only, args.anchors, not args.no_twice, seeds)
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
