"""Benchmark of the detectors (not a test): prints tables and writes JSON.

1. Quality, ``--seeds`` seeds (30) per scenario, change at row 5,000, batches of 100 rows
   (as the daemon feeds them): N(0,1) -> N(0.5,1); N(0,1) -> N(0,2^2); and two abrupt
   concept drifts in river's synthetic classification streams, watched on the 0/1 error
   of a decision tree trained on 3,000 rows of the first concept: SEA (10 % label noise)
   when its threshold moves from 8 to 9.5 (variant 0 -> 3, error ~0.10 -> ~0.20), and
   Agrawal (5 % perturbation) when its classification function changes from 0 to 2 (error
   ~0.06 -> ~0.5). Per detector: runs detected within 2,000 rows, mean delay, false alarms
   per 5,000 stationary rows; the default univariate configuration
   (:func:`detectors.registry.default_univariate`) beside every river detector with its
   driftloop defaults (binary-only ones on the error streams only). Also false alarms of
   the default and ADWIN on long stationary streams (``--long`` rows per seed).
2. Speed: values/s through the detector's batch path (``update`` with 10,000 values, then
   ``check``) per streaming detector vs river's own ``for x: det.update(x)`` loop with the
   same parameters, in the same run (wall clock and this process's CPU time, which is what
   a loaded machine distorts least); the first call's time (numba's compile, or its cache
   load); the windowed per-feature tests on 100k reference x 10k window x 20 features vs
   evidently's DataDriftPreset on the same data, with the per-feature decisions compared
   (KS, p < 0.05, no correction: evidently's decision rule).

Usage: python bench/detectors.py [--quick] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
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


def _concept_errors(rows: Callable[[int, int, int], tuple[np.ndarray, np.ndarray]],
                    before: int, after: int, seed: int) -> np.ndarray:
    """0/1 errors of a tree trained on concept ``before``, on CHANGE rows of it then AFTER
    rows of concept ``after``."""
    from sklearn.tree import DecisionTreeClassifier

    x_fit, y_fit = rows(before, seed + 1, 3000)
    model = DecisionTreeClassifier(max_depth=8, random_state=0).fit(x_fit, y_fit)
    x_a, y_a = rows(before, seed + 2, CHANGE)
    x_b, y_b = rows(after, seed + 3, AFTER)
    return np.r_[model.predict(x_a) != y_a, model.predict(x_b) != y_b].astype(np.float64)


def _sea(variant: int, seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    from river.datasets import synth

    data = list(synth.SEA(variant=variant, seed=seed, noise=0.1).take(n))
    return np.array([list(x.values()) for x, _ in data]), np.array([y for _, y in data])


def _agrawal(function: int, seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    from river.datasets import synth

    gen = synth.Agrawal(classification_function=function, seed=seed, perturbation=0.05)
    data = list(gen.take(n))
    return np.array([list(x.values()) for x, _ in data], dtype=np.float64), np.array(
        [y for _, y in data])


def sea_errors(rng: np.random.Generator) -> np.ndarray:
    return _concept_errors(_sea, 0, 3, int(rng.integers(2**31)))


def agrawal_errors(rng: np.random.Generator) -> np.ndarray:
    return _concept_errors(_agrawal, 0, 2, int(rng.integers(2**31)))


SCENARIOS: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "mean 0->0.5 sd": mean_shift,
    "variance sd 1->2": variance_shift,
    "SEA 8->9.5 (error)": sea_errors,
    "Agrawal f0->f2 (error)": agrawal_errors,
}


def detector(kind: str, error: bool = False) -> Any:
    """``kind`` with its driftloop defaults, watching the model's error (``error``) or the
    one feature ``x``; the binary detectors (:data:`BINARY`) watch only the error."""
    signal = "error" if error or kind in BINARY else "x"
    return build(DETECTORS[kind].Config(signal=signal), ["x"])  # type: ignore[call-arg]


def run_one(kind: str, values: np.ndarray, error: bool) -> tuple[int | None, int]:
    """First alarm at or after the change (None if none within AFTER rows) and the number
    of alarms before it; ``error``: ``values`` are the model's 0/1 errors."""
    det = detector(kind, error)
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


DEFAULT = "default"  # the default_univariate detectors together: an alarm of any of them


def _quality_row(scenario: str, detector: str, res: list[tuple[int | None, int]],
                 seconds: float) -> dict[str, Any]:
    delays = [f - CHANGE for f, _ in res if f is not None]
    return {
        "scenario": scenario, "detector": detector, "runs": len(res),
        "detected": len(delays),
        "mean_delay": float(np.mean(delays)) if delays else None,
        "max_delay": int(max(delays)) if delays else None,
        "false_alarms_per_5000": sum(fa for _, fa in res) / len(res),
        "seconds": seconds,
    }


def quality(seeds: int, kinds: list[str], default: list[str]) -> list[dict[str, Any]]:
    """Every detector in ``kinds`` on every scenario, then the ``default`` detectors as one
    (first alarm of any after the change; false alarms added up, an upper bound)."""
    out = []
    for scenario, make in SCENARIOS.items():
        data = [make(np.random.default_rng(s)) for s in range(seeds)]
        binary = scenario.endswith("(error)")
        per: dict[str, list[tuple[int | None, int]]] = {}
        seconds: dict[str, float] = {}
        for kind in kinds:
            if kind in BINARY and not binary:
                continue
            t0 = time.perf_counter()
            per[kind] = [run_one(kind, v, binary) for v in data]
            seconds[kind] = time.perf_counter() - t0
            out.append(_quality_row(scenario, kind, per[kind], seconds[kind]))
            print(_row(out[-1]), flush=True)
        if len(default) > 1:
            runs = zip(*(per[k] for k in default), strict=True)
            both = [(min((f for f, _ in rs if f is not None), default=None),
                     sum(fa for _, fa in rs)) for rs in runs]
            out.append(_quality_row(scenario, DEFAULT, both, sum(seconds[k] for k in default)))
            print(_row(out[-1]), flush=True)
    return out


def long_stationary(seeds: int, rows: int, kinds: list[str]) -> list[dict[str, Any]]:
    out = []
    for kind in kinds:
        alarms = 0
        for s in range(seeds):
            det = detector(kind)
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


def with_default(rows: list[dict[str, Any]], default: list[str]) -> list[dict[str, Any]]:
    """``rows`` plus one for the ``default`` detectors together (their alarms added up)."""
    mine = [r for r in rows if r["detector"] in default]
    if len(default) < 2 or len(mine) != len(default):
        return rows
    alarms, n = sum(r["alarms"] for r in mine), mine[0]["rows"]
    print(f"  long stationary {DEFAULT:>12}: {alarms} alarms in {n} rows", flush=True)
    return [*rows, {"detector": DEFAULT, "rows": n, "alarms": alarms,
                    "false_alarms_per_5000": alarms / n * 5000,
                    "false_alarms_per_100000": alarms / n * 100_000}]


def _row(r: dict[str, Any]) -> str:
    delay = "-" if r["mean_delay"] is None else f"{r['mean_delay']:.0f}"
    return (f"  {r['scenario']:<22} {r['detector']:>12}  detected {r['detected']:>2}/{r['runs']:<2}"
            f"  mean delay {delay:>5}  false alarms/5000 {r['false_alarms_per_5000']:.2f}")


def _river_twin(det: Any) -> tuple[Any, bool]:
    """A river object with the parameters of the adapter ``det``, and whether the adapter
    feeds it ``1 - x``."""
    from detectors.river_adapter import ENGINES

    return ENGINES[det.engine](**det.params), bool(det.invert)


def _river_rate(raw: Any, x: np.ndarray, budget_s: float) -> tuple[float, float]:
    """river's own loop over (a prefix of) ``x``: values/s, wall and CPU; slow detectors
    get a prefix sized to take about ``budget_s``."""
    values = x.tolist()
    probe = values[:2000]
    t0 = time.perf_counter()
    for v in probe:
        raw.update(v)
    rate = len(probe) / (time.perf_counter() - t0)
    rest = values[len(probe) : len(probe) + max(int(rate * budget_s), 1000)]
    w0, c0 = time.perf_counter(), time.process_time()
    for v in rest:
        raw.update(v)
    return len(rest) / (time.perf_counter() - w0), len(rest) / (time.process_time() - c0)


_COMPILE = """
import time, numpy as np
t0 = time.perf_counter()
from detectors.registry import DETECTORS, build
t1 = time.perf_counter()
for kind in {kinds!r}:
    signal = "error" if kind in {binary!r} else "x"
    build(DETECTORS[kind].Config(signal=signal), ["x"]).update(np.zeros(200))
print(t1 - t0, time.perf_counter() - t1)
"""


def compile_cost(kinds: list[str]) -> dict[str, float]:
    """Seconds to import the detectors and to build and first feed every compiled one,
    in a fresh process: with an empty numba cache (compiling), then again (loading it)."""
    import subprocess
    import tempfile

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
        for mode in ("cold", "cached"):
            code = _COMPILE.format(kinds=kinds, binary=BINARY)
            run = subprocess.run([sys.executable, "-c", code], env=env,
                                 capture_output=True, text=True, check=True)
            imp, first = map(float, run.stdout.split())
            out[f"import_s_{mode}"], out[f"first_calls_s_{mode}"] = imp, first
    print(f"  numba: import {out['import_s_cold']:.1f} s; first calls of {len(kinds)} compiled "
          f"detectors {out['first_calls_s_cold']:.1f} s with an empty cache, "
          f"{out['first_calls_s_cached']:.2f} s from the cache", flush=True)
    return out


def speed_streaming(n: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    out = []
    for kind in ["cusum", *STREAMING]:
        x = (rng.normal(size=n) if kind in {"pagehinkley", "kswin"}
             else (rng.random(n) < 0.1).astype(float))
        detector(kind).update(x[:100])  # compiled (or loaded from numba's cache) already
        det = detector(kind)
        w0, c0 = time.perf_counter(), time.process_time()
        for start in range(0, n, 10_000):
            det.update(x[start : start + 10_000])
            det.check()
        wall, cpu = n / (time.perf_counter() - w0), n / (time.process_time() - c0)
        row: dict[str, Any] = {"detector": kind, "values_per_s": wall, "values_per_cpu_s": cpu}
        if kind != "cusum":
            raw, invert = _river_twin(det)
            theirs, theirs_cpu = _river_rate(raw, 1.0 - x if invert else x, 1.0)
            row |= {"river_loop_values_per_s": theirs, "river_loop_values_per_cpu_s": theirs_cpu}
        out.append(row)
        river = "" if kind == "cusum" else (
            f"   river's loop {row['river_loop_values_per_s'] / 1e6:7.3f} M/s"
            f" (CPU {row['river_loop_values_per_cpu_s'] / 1e6:7.3f})")
        print(f"  {kind:>12}: {wall / 1e6:6.2f} M values/s (CPU {cpu / 1e6:6.2f}){river}",
              flush=True)
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


def acceptance(results: dict[str, Any]) -> dict[str, bool]:
    """Issue 3's targets, checked on this run's figures."""
    members = results["default_univariate"]
    default = DEFAULT if len(members) > 1 else members[0]
    rows = {r["scenario"]: r for r in results["quality"] if r["detector"] == default}
    mean = rows["mean 0->0.5 sd"]
    speed = results["streaming_speed"]
    windowed = results["windowed_speed"]
    return {
        "default: mean shift detected every run": mean["detected"] == mean["runs"],
        "default: mean delay <= 150": (mean["mean_delay"] or 1e9) <= 150,
        "default: <= 0.1 false alarms / 5000": mean["false_alarms_per_5000"] <= 0.1,
        "default: variance shift detected every run":
            rows["variance sd 1->2"]["detected"] == rows["variance sd 1->2"]["runs"],
        **{f"default: {k} detected every run": r["detected"] == r["runs"]
           for k, r in rows.items() if k.endswith("(error)")},
        "streaming >= 1M values/s (CPU) each": all(r["values_per_cpu_s"] >= 1e6 for r in speed),
        "windowed KS <= 1 s": windowed["tests"]["ks"]["seconds"] <= 1.0,
        "KS >= 10x evidently, same decisions": bool(
            windowed.get("same_decisions") and windowed.get("speedup_ks", 0) >= 10),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5 seeds, small sizes")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--long", type=int, default=None, help="rows per seed, long stationary run")
    args = ap.parse_args()
    t_start = time.perf_counter()
    seeds = args.seeds or (5 if args.quick else 30)
    default: list[str] = [c.kind for c in default_univariate()]
    kinds = [*default, *[k for k in STREAMING if k not in default]]
    print(f"quality ({seeds} seeds, change at row {CHANGE}):")
    results: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}, "
                   f"{os.cpu_count()} cores",
        "load_average_at_start": os.getloadavg()[0],
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "default_univariate": default,
        "quality": quality(seeds, kinds, default),
    }
    long_rows = args.long or (20_000 if args.quick else 100_000)
    long_kinds = list(dict.fromkeys([*default, "adwin"]))
    stationary = long_stationary(seeds, long_rows, long_kinds)
    results["long_stationary"] = with_default(stationary, default)
    print("speed, streaming:")
    results["streaming_speed"] = speed_streaming(200_000 if args.quick else 2_000_000)
    if not args.quick:
        compiled = [k for k in STREAMING if k != "adwin"]
        results["numba_compile"] = compile_cost(compiled)
    print("speed, windowed:")
    results["windowed_speed"] = (speed_windowed(10_000, 1_000, 20, evidently=True) if args.quick
                                 else speed_windowed(100_000, 10_000, 20, evidently=True))
    results["acceptance"] = acceptance(results)
    results["seconds"] = time.perf_counter() - t_start
    print(f"acceptance: {json.dumps(results['acceptance'])}")
    print(f"took {results['seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
