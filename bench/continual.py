"""Continual-learning benchmark of driftloop's strategies (not a test): a table and JSON.

Three offline benchmarks, every strategy on each, side by side in one run:

1. ``river_recurring``: river's Agrawal stream, three concepts (classification function
   and age band) recurring A B C A B C…; a concept is a distribution.
2. ``digits_class_incremental``: scikit-learn's 8×8 digits in five tasks of two classes
   each, one 10-way head (class-incremental).
3. ``mnist1d_class_incremental``: MNIST-1D from the ``mnist1d`` generator (generated,
   never downloaded) in five tasks of two classes.

Each experience is trained with the strategy, the rehearsal buffer then receives its
rows (as the daemon does after a retrain), and every distribution seen so far is
evaluated on its own test split. Reported per benchmark and strategy:
``avg_accuracy`` (final accuracy averaged over all distributions seen), ``forgetting``
(mean over distributions of best-ever accuracy minus final accuracy; the distribution
trained last is left out) and ``samples_processed`` (rows through forward and backward,
new and replayed). ``joint`` retrains from scratch on everything seen at every
experience (its buffer holds everything).

Usage: python bench/continual.py [--quick] [--json OUT.json] [--only NAME]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from strategies.base import Budget  # noqa: E402
from strategies.evaluation import accuracy  # noqa: E402
from strategies.models import (  # noqa: E402
    CNNConfig,
    MLPConfig,
    ModelConfig,
    build_model,
    fit_normalization,
)
from strategies.registry import (  # noqa: E402
    BufferConfig,
    StrategyConfig,
    build,
    build_buffer,
)

Split = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Experience:
    distribution: str
    train: Split


@dataclass(frozen=True)
class Benchmark:
    name: str
    experiences: list[Experience]
    tests: dict[str, Split]
    n_features: int
    n_classes: int
    model: ModelConfig
    buffer: BufferConfig
    epochs: int
    joint_epochs: int
    lr: float


def _t(x: np.ndarray, y: np.ndarray) -> Split:
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64)


def river_recurring(quick: bool) -> Benchmark:
    from runtime.config import Segment
    from runtime.synthetic import segment_rows

    concepts = {
        "A: f1, age 20-40": Segment(rows=1, function=1, where={"age": (20, 40)}),
        "B: f4, age 40-60": Segment(rows=1, function=4, where={"age": (40, 60)}),
        "C: f7, age 60-81": Segment(rows=1, function=7, where={"age": (60, 81)}),
    }
    rounds = 2 if quick else 4
    n_train, n_test = (800, 1000) if quick else (2000, 2000)
    order = [name for _ in range(rounds) for name in concepts]
    exps = []
    for i, name in enumerate(order):
        rows = list(segment_rows(concepts[name], seed=1000 + i, n=n_train))
        exps.append(Experience(name, _t(np.array([r[0] for r in rows]),
                                        np.array([r[1] for r in rows]))))
    tests = {}
    for j, (name, seg) in enumerate(concepts.items()):
        rows = list(segment_rows(seg, seed=99_000 + j, n=n_test, clean=True))
        tests[name] = _t(np.array([r[0] for r in rows]), np.array([r[1] for r in rows]))
    return Benchmark("river_recurring", exps, tests, 9, 2, MLPConfig(hidden=[64, 64]),
                     BufferConfig(kind="experience_balanced", capacity=600),
                     epochs=5 if quick else 8, joint_epochs=5 if quick else 8, lr=3e-3)


def _class_incremental(
    name: str, x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray,
    model: ModelConfig, capacity: int, epochs: int, joint_epochs: int, lr: float,
) -> Benchmark:
    exps, tests = [], {}
    for t in range(5):
        classes = (2 * t, 2 * t + 1)
        key = f"classes {classes[0]},{classes[1]}"
        m, mt = np.isin(y, classes), np.isin(yt, classes)
        exps.append(Experience(key, _t(x[m], y[m])))
        tests[key] = _t(xt[mt], yt[mt])
    return Benchmark(name, exps, tests, x.shape[1], 10, model,
                     BufferConfig(kind="class_balanced", capacity=capacity),
                     epochs=epochs, joint_epochs=joint_epochs, lr=lr)


def digits_class_incremental(quick: bool) -> Benchmark:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    d = load_digits()
    x, y = d.data.astype(np.float64), d.target.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(y))
    n_test = len(y) // 4
    te, tr = perm[:n_test], perm[n_test:]
    model = CNNConfig(shape=[1, 8, 8], channels=[16, 32], hidden=64)
    return _class_incremental("digits_class_incremental", x[tr], y[tr], x[te], y[te], model,
                              capacity=400, epochs=10 if quick else 15,
                              joint_epochs=10 if quick else 15, lr=2e-3)


def mnist1d_class_incremental(quick: bool) -> Benchmark:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = 4000 if quick else 10000
    args.seed = 42
    # the generator seeds numpy's global RNG; leave the caller's state as it was
    state = np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(state)
    model = CNNConfig(shape=[1, 40], channels=[32, 64], hidden=128)
    return _class_incremental("mnist1d_class_incremental", data["x"], data["y"].astype(np.int64),
                              data["x_test"], data["y_test"].astype(np.int64), model,
                              capacity=1000 if quick else 2000, epochs=10 if quick else 15,
                              joint_epochs=10 if quick else 15, lr=2e-3)


BENCHMARKS: dict[str, Callable[[bool], Benchmark]] = {
    "river_recurring": river_recurring,
    "digits_class_incremental": digits_class_incremental,
    "mnist1d_class_incremental": mnist1d_class_incremental,
}


def strategies(lr: float) -> dict[str, dict[str, Any]]:
    common = {"lr": lr, "batch_size": 64, "patience": None}
    return {
        "finetune": {"kind": "finetune", **common},
        "replay": {"kind": "replay", **common, "mix": 0.5},
        "der": {"kind": "der", **common, "mix": 0.5, "alpha": 0.3},
        "lwf": {"kind": "lwf", **common, "alpha": 1.0, "temperature": 2.0},
        "ewc": {"kind": "ewc", **common, "strength": 1e4},
        "ewc+replay": {"kind": "ewc", **common, "strength": 1e3, "mix": 0.5},
        "joint": {"kind": "joint", **common},
    }


def run_one(bench: Benchmark, label: str, cfg_dict: dict[str, Any], seed: int) -> dict[str, Any]:
    from pydantic import TypeAdapter

    cfg = TypeAdapter(StrategyConfig).validate_python(cfg_dict)
    strategy = build(cfg)
    is_joint = cfg_dict["kind"] == "joint"
    model = build_model(bench.model, bench.n_features, bench.n_classes, seed=seed)
    fit_normalization(model, bench.experiences[0].train[0])
    total_rows = sum(len(e.train[1]) for e in bench.experiences)
    buffer = build_buffer(
        BufferConfig(capacity=total_rows) if is_joint else bench.buffer, seed=seed
    )
    epochs = bench.joint_epochs if is_joint else bench.epochs
    seen: list[str] = []
    matrix: list[dict[str, float]] = []
    samples = 0
    start = time.perf_counter()
    for i, exp in enumerate(bench.experiences):
        r = strategy.train(model, *exp.train, buffer, Budget(epochs=epochs), seed=seed + i,
                           device="cpu")
        samples += r.samples_processed
        buffer.add(*exp.train)
        if exp.distribution not in seen:
            seen.append(exp.distribution)
        matrix.append({d: accuracy(model, *bench.tests[d]) for d in seen})
    seconds = time.perf_counter() - start
    final = matrix[-1]
    last = bench.experiences[-1].distribution
    drops = [max(row[d] for row in matrix[:-1] if d in row) - final[d]
             for d in seen if d != last and any(d in row for row in matrix[:-1])]
    return {
        "strategy": label,
        "config": cfg_dict,
        "avg_accuracy": float(np.mean([final[d] for d in seen])),
        "forgetting": float(np.mean(drops)) if drops else 0.0,
        "samples_processed": samples,
        "seconds": round(seconds, 2),
        "final_accuracy": final,
        "accuracy_matrix": matrix,
        "epochs_per_experience": epochs,
    }


def checks(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    ft, rp, jt = rows.get("finetune"), rows.get("replay"), rows.get("joint")
    if not (ft and rp and jt):
        return {}
    return {
        "replay_forgetting_over_finetune": rp["forgetting"] / ft["forgetting"]
        if ft["forgetting"] > 0 else None,
        "replay_forgetting_at_most_third_of_finetune": rp["forgetting"] <= ft["forgetting"] / 3,
        "replay_gap_to_joint_points": 100 * (jt["avg_accuracy"] - rp["avg_accuracy"]),
        "replay_within_3_points_of_joint": jt["avg_accuracy"] - rp["avg_accuracy"] <= 0.03,
        "replay_compute_over_joint": rp["samples_processed"] / jt["samples_processed"],
        "replay_compute_at_most_quarter_of_joint":
            rp["samples_processed"] <= 0.25 * jt["samples_processed"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller data and budgets")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--only", choices=sorted(BENCHMARKS), action="append",
                    help="run only this benchmark (repeatable)")
    ap.add_argument("--strategies", help="comma-separated subset of strategies")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "threads": 1},
        "mode": "quick" if args.quick else "full",
        "seed": args.seed,
        "benchmarks": {},
    }
    for name in args.only or list(BENCHMARKS):
        bench = BENCHMARKS[name](args.quick)
        plan = strategies(bench.lr)
        if args.strategies:
            plan = {k: v for k, v in plan.items() if k in args.strategies.split(",")}
        rows: dict[str, dict[str, Any]] = {}
        print(f"\n{name}: {len(bench.experiences)} experiences, "
              f"{len(bench.tests)} distributions, buffer {bench.buffer.kind} "
              f"{bench.buffer.capacity}, {bench.epochs} epochs each (joint {bench.joint_epochs})")
        print(f"  {'strategy':<12} {'avg_acc':>8} {'forgetting':>10} {'samples':>10} {'s':>7}")
        for label, cfg in plan.items():
            row = run_one(bench, label, cfg, args.seed)
            rows[label] = row
            print(f"  {label:<12} {row['avg_accuracy']:>8.3f} {row['forgetting']:>10.3f} "
                  f"{row['samples_processed']:>10} {row['seconds']:>7.1f}", flush=True)
        out["benchmarks"][name] = {"strategies": rows, "checks": checks(rows),
                                   "experiences": [e.distribution for e in bench.experiences]}
        for k, v in checks(rows).items():
            print(f"  {k}: {v:.3f}" if isinstance(v, float) else f"  {k}: {v}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
