"""Benchmark of the gate (not a test): does it refuse what forgot and promote what improved?

Setup, per seeded run (small and fast; the strategies are called directly, not the daemon):

- a binary task with a fixed nonlinear concept; the old distribution A (centred at 0) and a
  new one B (shifted), where a model trained on A errs often;
- the champion: an MLP trained on A; its golden set: held-out rows of A;
- candidates: the champion fine-tuned with replay (a buffer of A rows) on B's rows whose
  labels were flipped at 0%, 10%, 20% or 40% (the holdout is split from the same noisy rows,
  as it would be in production);
- truth: champion and candidate scored on large clean samples of A and B.

The gate (rules below, α = 0.05, paired bootstrap) sees only the holdout and the golden set.
Reported: ``refuse_rate`` per flip fraction; the refuse rate among candidates that truly lost
more than the tolerance on the golden set or one of its classes (must be ≥ 0.95); the promote
rate among clean candidates that truly improved on B within every tolerance (≥ 0.95); and
``false_refuse_rate``: identical-quality candidates (a second model trained exactly like the
champion, with another seed, judged by the non-inferiority rules) refused (≤ α).

Usage: python bench/gate.py [--quick] [--json OUT.json] [--runs N]
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runtime.evidence import NEW_DATA, EvalSet, Evidence  # noqa: E402
from runtime.gate import GateConfig, Rule, evaluate  # noqa: E402
from strategies import finetune, replay  # noqa: E402
from strategies.base import Budget  # noqa: E402
from strategies.evaluation import predict_proba  # noqa: E402
from strategies.models import MLPConfig, build_model, fit_normalization  # noqa: E402

FLIPS = (0.0, 0.1, 0.2, 0.4)
N_FEATURES = 6
SHIFT = 2.0
TOL_GOLDEN, TOL_CLASS, MIN_GAIN, ALPHA = 0.03, 0.05, 0.02, 0.05
PROMOTION_RULES = [
    Rule(on="new_data", min_improvement=MIN_GAIN),
    Rule(on="golden", max_worsening=TOL_GOLDEN),
    Rule(on="golden", by="class", max_worsening=TOL_CLASS),
]
NON_INFERIORITY_RULES = [
    Rule(on="new_data", max_worsening=TOL_GOLDEN),
    Rule(on="golden", max_worsening=TOL_GOLDEN),
    Rule(on="golden", by="class", max_worsening=TOL_CLASS),
]


def concept(x: np.ndarray) -> np.ndarray:
    """The true label: a fixed nonlinear boundary over the first three features."""
    score = np.sin(2.0 * x[:, 0]) + np.sin(2.0 * x[:, 1]) + 0.5 * x[:, 2]
    return (score > 0.0).astype(np.int64)


def sample(rng: np.random.Generator, n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(0.0, 1.0, (n, N_FEATURES))
    x[:, :2] += shift
    return x, concept(x)


def flip(rng: np.random.Generator, y: np.ndarray, fraction: float) -> np.ndarray:
    return np.where(rng.random(len(y)) < fraction, 1 - y, y)


class _Buffer:
    """The few methods of a rehearsal buffer that replay reads (avoids importing avalanche)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y, self.capacity = x, y, len(y)

    def __len__(self) -> int:
        return len(self.y)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x, self.y

    def add(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor | None = None) -> None:
        raise NotImplementedError("the bench never adds to its buffer")

    def logits(self) -> torch.Tensor | None:
        return None

    def set_logits(self, logits: torch.Tensor) -> None:
        raise NotImplementedError("replay stores no logits")

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"x": self.x, "y": self.y}

    def state_meta(self) -> dict[str, Any]:
        return {}

    def load(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        raise NotImplementedError("the bench never restores its buffer")


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float32)


def train_champion(x: np.ndarray, y: np.ndarray, seed: int, epochs: int) -> torch.nn.Module:
    model = build_model(MLPConfig(hidden=[32, 32]), N_FEATURES, 2, seed=seed)
    fit_normalization(model, _t(x))
    finetune.build(finetune.Config(lr=3e-3, batch_size=64, patience=None)).train(
        model, _t(x), torch.as_tensor(y), None, Budget(epochs=epochs), seed, device="cpu"
    )
    return model.eval()


def fine_tune(
    champion: torch.nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    buffer: _Buffer,
    seed: int,
    epochs: int,
) -> torch.nn.Module:
    model = copy.deepcopy(champion)
    strategy = replay.build(replay.Config(lr=3e-3, batch_size=64, mix=0.5, patience=None))
    strategy.train(
        model, _t(x), torch.as_tensor(y), buffer, Budget(epochs=epochs), seed, device="cpu"
    )
    return model.eval()


def proba(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    return predict_proba(model, _t(x)).numpy().astype(np.float64)


def true_scores(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    right = proba(model, x).argmax(axis=1) == y
    return {
        "all": float(right.mean()),
        **{f"class{c}": float(right[y == c].mean()) for c in (0, 1)},
    }


def judge(
    champion: torch.nn.Module,
    candidate: torch.nn.Module,
    holdout: tuple[np.ndarray, np.ndarray],
    golden: tuple[np.ndarray, np.ndarray],
    rules: list[Rule],
    seed: int,
) -> bool:
    sets = {
        name: EvalSet(name, y, proba(champion, x), proba(candidate, x), x)
        for name, (x, y) in ((NEW_DATA, holdout), ("A", golden))
    }
    ev = Evidence("classification", tuple(f"f{i}" for i in range(N_FEATURES)), (0, 1), sets)
    cfg = GateConfig(rules=rules, alpha=ALPHA, seed=seed, min_subset_rows=30)
    return evaluate(ev, cfg, ["A"]).passed


def one_run(seed: int, sizes: dict[str, int]) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    xa, ya = sample(rng, sizes["train"], 0.0)
    xg, yg = sample(rng, sizes["golden"], 0.0)
    xea, yea = sample(rng, sizes["truth"], 0.0)
    xeb, yeb = sample(rng, sizes["truth"], SHIFT)
    champion = train_champion(xa, ya, seed, sizes["epochs"])
    before_a, before_b = true_scores(champion, xea, yea), true_scores(champion, xeb, yeb)
    pick = rng.choice(len(ya), size=min(1000, len(ya)), replace=False)
    buffer = _Buffer(_t(xa[pick]), torch.as_tensor(ya[pick]))
    out: list[dict[str, Any]] = []
    xb, yb_clean = sample(rng, sizes["new"], SHIFT)
    n_hold = int(0.3 * len(yb_clean))
    for f in FLIPS:
        yb = flip(np.random.default_rng(seed * 100 + int(f * 100)), yb_clean, f)
        cand = fine_tune(champion, xb[n_hold:], yb[n_hold:], buffer, seed, sizes["epochs"])
        after_a, after_b = true_scores(cand, xea, yea), true_scores(cand, xeb, yeb)
        losses = [before_a[k] - after_a[k] for k in ("all", "class0", "class1")]
        lost = losses[0] > TOL_GOLDEN or max(losses[1:]) > TOL_CLASS
        passed = judge(champion, cand, (xb[:n_hold], yb[:n_hold]), (xg, yg), PROMOTION_RULES, seed)
        out.append(
            {
                "seed": seed,
                "kind": "retrain",
                "flip": f,
                "passed": passed,
                "true_loss_golden": losses[0],
                "true_loss_class": max(losses[1:]),
                "true_gain_new": after_b["all"] - before_b["all"],
                "lost_beyond_tolerance": lost,
            }
        )
    # identical quality: a retrain without drift (fresh rows of A, the same replay)
    xn, yn = sample(rng, sizes["new"], 0.0)
    twin = fine_tune(champion, xn[n_hold:], yn[n_hold:], buffer, seed + 1, 2)
    twin_a = true_scores(twin, xea, yea)
    passed = judge(
        champion, twin, (xn[:n_hold], yn[:n_hold]), (xg, yg), NON_INFERIORITY_RULES, seed
    )
    out.append(
        {
            "seed": seed,
            "kind": "identical",
            "passed": passed,
            "true_loss_golden": before_a["all"] - twin_a["all"],
            "true_loss_class": max(before_a[k] - twin_a[k] for k in ("class0", "class1")),
        }
    )
    return out


def rate(rows: list[dict[str, Any]], passed: bool) -> float | None:
    return sum(r["passed"] == passed for r in rows) / len(rows) if rows else None


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    retrains = [r for r in rows if r["kind"] == "retrain"]
    lost = [r for r in retrains if r["lost_beyond_tolerance"]]
    improved = [
        r
        for r in retrains
        if r["flip"] == 0.0 and not r["lost_beyond_tolerance"] and r["true_gain_new"] >= MIN_GAIN
    ]
    identical = [r for r in rows if r["kind"] == "identical"]
    return {
        "refuse_rate": {
            str(f): rate([r for r in retrains if r["flip"] == f], False) for f in FLIPS
        },
        "refuse_rate_lost_beyond_tolerance": rate(lost, False),
        "n_lost_beyond_tolerance": len(lost),
        "promote_rate_clean_improved": rate(improved, True),
        "n_clean_improved": len(improved),
        "false_refuse_rate": rate(identical, False),
        "n_identical": len(identical),
        "alpha": ALPHA,
        "tolerances": {"golden": TOL_GOLDEN, "class": TOL_CLASS, "min_gain": MIN_GAIN},
    }


def _init() -> None:
    torch.set_num_threads(1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few runs, for iteration")
    ap.add_argument("--runs", type=int, help="seeded runs (default 12 quick, 60 full)")
    ap.add_argument("--seed", type=int, default=0, help="first seed")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--workers", type=int, default=1, help="processes running seeds in parallel")
    args = ap.parse_args()
    torch.set_num_threads(1)
    runs = args.runs or (12 if args.quick else 60)
    sizes = {"train": 2000, "golden": 2000, "new": 2500, "truth": 20000, "epochs": 12}
    t0 = time.perf_counter()
    seeds = range(args.seed, args.seed + runs)
    rows: list[dict[str, Any]] = []
    if args.workers > 1:
        with multiprocessing.get_context("spawn").Pool(args.workers, _init) as pool:
            for got in pool.starmap(one_run, [(s, sizes) for s in seeds]):
                rows.extend(got)
    else:
        for seed in seeds:
            rows.extend(one_run(seed, sizes))
    result = {
        "bench": "gate",
        "mode": "quick" if args.quick else "full",
        "runs": runs,
        "sizes": sizes,
        "machine": f"{platform.machine()} {platform.processor() or ''} {platform.node()}".strip(),
        "torch_threads": 1,
        "workers": args.workers,
        "seconds": round(time.perf_counter() - t0, 1),
        **summarize(rows),
        "rows": rows,
    }
    print(f"gate bench ({result['mode']}, {runs} seeded runs, {result['seconds']} s)")
    print(f"{'flip fraction':<16}{'refuse rate':>12}")
    for f, r in result["refuse_rate"].items():
        print(f"{f:<16}{r:>12.2f}")
    print(
        f"refused among candidates that lost > tolerance: "
        f"{result['refuse_rate_lost_beyond_tolerance']} (n={result['n_lost_beyond_tolerance']})"
    )
    print(
        f"promoted among clean candidates that truly improved: "
        f"{result['promote_rate_clean_improved']} (n={result['n_clean_improved']})"
    )
    print(
        f"false refuse rate (identical quality): {result['false_refuse_rate']} "
        f"(n={result['n_identical']}, alpha {ALPHA})"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
