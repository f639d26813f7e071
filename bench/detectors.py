"""Benchmark of the detectors (not a test): prints tables and writes JSON.

1. Quality, ``--seeds`` seeds (30) per scenario, change at row 5,000, batches of 100 rows
   (as the daemon feeds them): N(0,1) -> N(0.5,1); N(0,1) -> N(0,2^2); the error stream
   of a classifier fixed to concept 0 of river's SEA generator (10 % label noise) when the
   concept switches to variant 2 (error 0.10 -> ~0.19). Per detector: runs detected within
   2,000 rows, mean delay, false alarms per 5,000 stationary rows; the default univariate
   configuration (:func:`detectors.registry.default_univariate`) beside every river
   detector with its driftloop defaults. Also false alarms of the fast ones on long
   stationary streams (``--long`` rows per seed).
2. Speed: values/s through the adapter per streaming detector vs river's own
   ``for x: det.update(x)`` loop, in the same run; the windowed per-feature test on
   100k reference x 10k window x 20 features vs evidently's DataDriftPreset on the same
   data, with the per-feature decisions compared (KS, p < 0.05, no correction: evidently's
   decision rule).

Usage: python bench/detectors.py [--quick] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detectors import cvm, jensenshannon, ks, psi, wasserstein  # noqa: E402
from detectors.registry import DETECTORS, build, default_univariate  # noqa: E402

CHANGE = 5000
AFTER = 2000
BATCH = 100
STREAMING = ["adwin", "pagehinkley", "kswin", "ddm", "eddm", "hddm_a", "hddm_w", "fhddm"]
BINARY = {"ddm", "eddm", "hddm_a", "hddm_w", "fhddm"}


def mean_shift(rng: np.random.Generator) -> np.ndarray:
    return np.r_[rng.normal(0, 1, CHANGE), rng.normal(0.5, 1, AFTER)]


def variance_shift(rng: np.random.Generator) -> np.ndarray:
    return np.r_[rng.normal(0, 1, CHANGE), rng.normal(0, 2, AFTER)]


def sea_errors(rng: np.random.Generator) -> np.ndarray:
    from river.datasets import synth

    seed = int(rng.integers(2**31))
    out = []
    for variant, n in ((0, CHANGE), (2, AFTER)):
        for x, y in synth.SEA(variant=variant, seed=seed + variant, noise=0.1).take(n):
            out.append(float((x[0] + x[1] <= 8.0) != y))  # a model fixed to concept 0
    return np.asarray(out)


SCENARIOS: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "mean 0->0.5 sd": mean_shift,
    "variance sd 1->2": variance_shift,
    "SEA concept (error)": sea_errors,
}


def run_one(kind: str, values: np.ndarray) -> tuple[int | None, int]:
    """First alarm at or after the change (None if none within AFTER rows) and the number
    of alarms before it."""
    det = build(DETECTORS[kind].Config(signal="x"), ["x"])  # type: ignore[call-arg]
    first, false = None, 0
    for start in range(0, len(values), BATCH):
        idx = np.arange(start, min(start + BATCH, len(values)))
        det.update(values[idx], idx)
        sig = det.check()
        if sig.drift:
            assert sig.index is not None
            if sig.index < CHANGE:
                false += int(sig.details.get("alarms", 1))
            elif first is None:
                first = sig.index
    return first, false


def quality(seeds: int, kinds: list[str]) -> list[dict[str, Any]]:
    out = []
    for scenario, make in SCENARIOS.items():
        data = [make(np.random.default_rng(s)) for s in range(seeds)]
        binary = scenario.endswith("(error)")
        for kind in kinds:
            if kind in BINARY and not binary:
                continue
            n = min(seeds, 5) if kind == "kswin" else seeds  # ~1 ms a value
            t0 = time.perf_counter()
            res = [run_one(kind, v) for v in data[:n]]
            delays = [f - CHANGE for f, _ in res if f is not None]
            out.append({
                "scenario": scenario, "detector": kind, "runs": n,
                "detected": len(delays),
                "mean_delay": float(np.mean(delays)) if delays else None,
                "max_delay": int(max(delays)) if delays else None,
                "false_alarms_per_5000": sum(fa for _, fa in res) / n,
                "seconds": time.perf_counter() - t0,
            })
            print(_row(out[-1]), flush=True)
    return out


def long_stationary(seeds: int, rows: int, kinds: list[str]) -> list[dict[str, Any]]:
    out = []
    for kind in kinds:
        alarms = 0
        for s in range(seeds):
            det = build(DETECTORS[kind].Config(signal="x"), ["x"])  # type: ignore[call-arg]
            x = np.random.default_rng(1000 + s).normal(size=rows)
            for start in range(0, rows, 1000):
                det.update(x[start : start + 1000])
                sig = det.check()
                alarms += int(sig.details.get("alarms", 1)) if sig.drift else 0
        out.append({"detector": kind, "rows": seeds * rows, "alarms": alarms,
                    "false_alarms_per_5000": alarms / (seeds * rows) * 5000,
                    "false_alarms_per_100000": alarms / (seeds * rows) * 100_000})
        print(f"  long stationary {kind:>12}: {alarms} alarms in {seeds * rows} rows", flush=True)
    return out


def _row(r: dict[str, Any]) -> str:
    delay = "-" if r["mean_delay"] is None else f"{r['mean_delay']:.0f}"
    return (f"  {r['scenario']:<22} {r['detector']:>12}  detected {r['detected']:>2}/{r['runs']:<2}"
            f"  mean delay {delay:>5}  false alarms/5000 {r['false_alarms_per_5000']:.2f}")


def speed_streaming(n: int) -> list[dict[str, Any]]:
    from river import drift

    engines = {"adwin": drift.ADWIN, "pagehinkley": drift.PageHinkley, "ddm": drift.binary.DDM,
               "eddm": drift.binary.EDDM, "hddm_a": drift.binary.HDDMA,
               "hddm_w": drift.binary.HDDMW, "fhddm": drift.binary.FHDDM}
    rng = np.random.default_rng(0)
    out = []
    for kind in [*engines, "cusum"]:
        x = ((rng.random(n) < 0.1).astype(float) if kind in BINARY or kind == "cusum"
             else rng.normal(size=n))
        det = build(DETECTORS[kind].Config(), ["x"])  # type: ignore[call-arg]
        t0 = time.perf_counter()
        for start in range(0, n, 10_000):
            det.update(x[start : start + 10_000])
            det.check()
        ours = n / (time.perf_counter() - t0)
        theirs = None
        if kind in engines:
            raw = engines[kind]()
            values = x.tolist()
            t0 = time.perf_counter()
            for v in values:
                raw.update(v)
            theirs = n / (time.perf_counter() - t0)
        out.append({"detector": kind, "values_per_s": ours, "river_loop_values_per_s": theirs})
        print(f"  {kind:>12}: {ours / 1e6:6.2f} M values/s"
              + ("" if theirs is None else f"   river's loop {theirs / 1e6:6.2f} M/s"), flush=True)
    return out


def speed_windowed(n_ref: int, n_cur: int, m: int, evidently: bool) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    names = [f"f{i}" for i in range(m)]
    ref = rng.normal(size=(n_ref, m))
    shift = np.r_[np.zeros(m - m // 4), np.linspace(0.01, 0.05, m // 4)]  # borderline ones too
    cur = rng.normal(size=(n_cur, m)) + shift
    out: dict[str, Any] = {"shape": [n_ref, n_cur, m], "tests": {}}
    sizes = {"reference_size": n_ref, "window_size": n_cur, "min_samples": min(200, n_cur),
             "stride": n_cur}
    modules = {"ks": ks, "cvm": cvm, "psi": psi, "wasserstein": wasserstein,
               "jensenshannon": jensenshannon}
    decisions: list[bool] = []
    for kind, module in modules.items():
        extra: dict[str, Any] = {"alpha": 0.05, "correction": "none"}
        cfg = module.Config(**sizes, **extra)  # type: ignore[attr-defined]
        det = build(cfg, names)
        t0 = time.perf_counter()
        det.set_reference(ref)
        det.update(cur)
        sig = det.check()
        seconds = time.perf_counter() - t0
        out["tests"][kind] = {"seconds": seconds, "status": sig.status,
                              "calibration": sig.details.get("calibration")}
        if kind == "ks":
            decisions = [bool(r["drifted"]) for r in sig.details["features"]]
        boot = " + bootstrap calibration" if kind in {"psi", "wasserstein", "jensenshannon"} else ""
        print(f"  windowed {kind:>13} {n_ref}x{n_cur}x{m}: {seconds:.3f} s "
              f"(reference sort{boot} + test)", flush=True)
    out["ks_drifted"] = decisions
    if evidently:
        import pandas as pd
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        dd = DataDefinition(numerical_columns=names)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            snap = Report([DataDriftPreset(method="ks", threshold=0.05)]).run(
                Dataset.from_pandas(pd.DataFrame(cur, columns=names), data_definition=dd),
                Dataset.from_pandas(pd.DataFrame(ref, columns=names), data_definition=dd))
        seconds = time.perf_counter() - t0
        theirs = []
        for metric in snap.dict()["metrics"]:
            if metric["config"].get("column") in names:
                theirs.append(float(metric["value"]) < 0.05)
        out["evidently_seconds"] = seconds
        out["evidently_drifted"] = theirs
        out["same_decisions"] = theirs == decisions
        out["speedup_ks"] = seconds / out["tests"]["ks"]["seconds"]
        print(f"  evidently DataDriftPreset(ks): {seconds:.2f} s; same per-feature decisions: "
              f"{out['same_decisions']} ({sum(decisions)} of {m} drifted); "
              f"KS speed-up {out['speedup_ks']:.0f}x", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5 seeds, small sizes")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--long", type=int, default=None, help="rows per seed, long stationary run")
    args = ap.parse_args()
    seeds = args.seeds or (5 if args.quick else 30)
    default = [c.kind for c in default_univariate()]
    kinds = [*default, *[k for k in STREAMING if k not in default]]
    print(f"quality ({seeds} seeds, change at row {CHANGE}):")
    results: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
        "default_univariate": default,
        "quality": quality(seeds, kinds),
    }
    long_rows = args.long or (20_000 if args.quick else 100_000)
    results["long_stationary"] = long_stationary(seeds, long_rows, [*default, "adwin"])
    print("speed, streaming:")
    results["streaming_speed"] = speed_streaming(200_000 if args.quick else 2_000_000)
    print("speed, windowed:")
    results["windowed_speed"] = (speed_windowed(10_000, 1_000, 20, evidently=True) if args.quick
                                 else speed_windowed(100_000, 10_000, 20, evidently=True))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
