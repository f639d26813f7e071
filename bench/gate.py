"""Benchmark of the gate (not a test): does it refuse what forgot and promote what improved?

Setup, per seeded run (small and fast; the strategies are called directly, not the daemon):

- a binary task with a fixed nonlinear concept; the old distribution A (centred at 0) and a
  new one B (shifted), where a model trained on A errs often;
- the champion: an MLP trained on A; its golden set: 2000 held-out rows of A;
- drift retrains: the champion fine-tuned with replay (a buffer of A rows) on B's rows whose
  labels were flipped at 0%, 10%, 20% or 40%; the 750-row holdout is split from the same
  noisy rows, as in production (``retrain.holdout_fraction`` 0.3 of 2500 rows);
- no-drift twins (``twins`` per seed): the champion fine-tuned the same way on fresh rows of
  A, the retrain a daemon runs when nothing changed;
- truth: champion and candidate scored on 20 000 clean rows of A and of B.

The gate (α = 0.05, paired bootstrap, 1000 resamples) sees only the holdout and the golden
set. Drift retrains are judged by the promotion rules (gain ≥ 0.02 on the new data, loss ≤
0.03 on the golden set and ≤ 0.05 on each of its classes); twins by the non-inferiority rules
(loss ≤ 0.03 on the new data and the golden set, ≤ 0.05 per class).

Truth categories (true changes measured on the 20 000-row sets):

- ``lost``: true loss above the tolerance on the golden set or one of its classes. The gate
  must refuse ≥ 95%. No margin: a check passes only when its 95% upper bound is within the
  tolerance, so this holds check by check whatever the set size;
- ``clean_improved``: 0% flips, true gain ≥ min_gain + ``MARGIN["gain"]``, golden loss ≤
  tolerance − ``MARGIN["golden"]``, every class ≤ tolerance − ``MARGIN["class"]``. The gate
  must promote ≥ 95%;
- ``margin``: 0% flips, neither of the above: within the tolerances but closer to a boundary
  than the margin. The gate cannot promote these 95% of the time at these set sizes (a
  check needs the true loss about (z_0.95 + z_(1-α))·se inside the tolerance); their promote
  rate is reported on its own line, not hidden and not counted in either target;
- ``identical``: a twin whose every true change (golden, each class, new data) is within
  ±``MARGIN["identical"]``. The gate must refuse at most α (``false_refuse_rate``). Twins
  outside that band (a no-drift retrain often trades a few points between classes) are
  reported on their own line.

The margins equal the noise of the checks at these sizes: the JSON's ``design_noise`` gives
each check's median standard error and the margin it implies. Every rate comes with its
count and an exact (Clopper–Pearson) 95% interval.

Usage: python bench/gate.py [--quick] [--json OUT.json] [--runs N] [--workers N]
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runtime.promotion.evidence import NEW_DATA, EvalSet, Evidence  # noqa: E402
from runtime.promotion.gate import evaluate  # noqa: E402
from runtime.promotion.settings import GateConfig, Rule  # noqa: E402
from strategies import finetune, replay  # noqa: E402
from strategies.base import Budget, TrainRequest  # noqa: E402
from strategies.evaluation import predict_proba  # noqa: E402
from strategies.models import MLPConfig, build_model, fit_normalization  # noqa: E402

FLIPS = (0.0, 0.1, 0.2, 0.4)
SIZES = {
    "train": 2000,
    "golden": 2000,
    "new": 2500,
    "holdout": 750,
    "truth": 20000,
    "epochs": 12,
    "twins": 5,
}
N_FEATURES = 6
SHIFT = 2.0
TOL_GOLDEN, TOL_CLASS, MIN_GAIN, ALPHA = 0.03, 0.05, 0.02, 0.05
PROMOTION_RULES = [
    Rule(on="new_data", min_improvement=MIN_GAIN),
    Rule(on="golden", max_worsening=TOL_GOLDEN),
    Rule(on="golden", by="class", max_worsening=TOL_CLASS),
]
MARGIN = {"golden": 0.02, "class": 0.03, "gain": 0.065, "identical": 0.01}
"""Indifference margins of the truth categories (see the module docstring)."""
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
        TrainRequest(model, _t(x), torch.as_tensor(y), budget=Budget(epochs=epochs), seed=seed,
                     device="cpu")
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
        TrainRequest(model, _t(x), torch.as_tensor(y), buffer=buffer, budget=Budget(epochs=epochs),
                     seed=seed, device="cpu")
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
) -> dict[str, Any]:
    """The gate's verdict on the holdout and golden set, with the checks that failed."""
    sets = {
        name: EvalSet(name, y, proba(champion, x), proba(candidate, x), x)
        for name, (x, y) in ((NEW_DATA, holdout), ("A", golden))
    }
    ev = Evidence("classification", tuple(f"f{i}" for i in range(N_FEATURES)), (0, 1), sets)
    cfg = GateConfig(rules=rules, alpha=ALPHA, seed=seed, min_subset_rows=30)
    decision = evaluate(ev, cfg, ["A"])
    return {
        "passed": decision.passed,
        "failed_checks": [c.name for c in decision.checks if not c.passed],
        "measured": {c.name: c.numbers.get("loss") for c in decision.checks},
        "loss_upper": {c.name: c.numbers.get("loss_upper") for c in decision.checks},
    }


def _true_changes(
    before: dict[str, dict[str, float]],
    after: dict[str, dict[str, float]],
    new: str,
) -> dict[str, float]:
    """True losses on the golden distribution A (overall, per class) and gain on ``new``."""
    return {
        "loss_golden": before["A"]["all"] - after["A"]["all"],
        "loss_class": max(before["A"][k] - after["A"][k] for k in ("class0", "class1")),
        "gain_new": after[new]["all"] - before[new]["all"],
    }


def retrain_truth(t: dict[str, float], flip_fraction: float) -> str:
    """The truth category of a drift retrain (see the module docstring)."""
    if t["loss_golden"] > TOL_GOLDEN or t["loss_class"] > TOL_CLASS:
        return "lost"
    if (
        flip_fraction == 0.0
        and t["loss_golden"] <= TOL_GOLDEN - MARGIN["golden"]
        and t["loss_class"] <= TOL_CLASS - MARGIN["class"]
        and t["gain_new"] >= MIN_GAIN + MARGIN["gain"]
    ):
        return "clean_improved"
    return "margin" if flip_fraction == 0.0 else "noisy_within_tolerance"


def twin_truth(t: dict[str, float]) -> str:
    """``identical`` if every true change is within the indifference band, else ``twin_other``."""
    worst = max(abs(t["loss_golden"]), abs(t["loss_class"]), abs(t["gain_new"]))
    return "identical" if worst <= MARGIN["identical"] else "twin_other"


def one_run(seed: int, sizes: dict[str, int]) -> list[dict[str, Any]]:
    """One seeded world: a champion, four drift retrains and ``twins`` no-drift retrains."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    xa, ya = sample(rng, sizes["train"], 0.0)
    golden = sample(rng, sizes["golden"], 0.0)
    truth = {"A": sample(rng, sizes["truth"], 0.0), "B": sample(rng, sizes["truth"], SHIFT)}
    champion = train_champion(xa, ya, seed, sizes["epochs"])
    before = {k: true_scores(champion, *v) for k, v in truth.items()}
    pick = rng.choice(len(ya), size=min(1000, len(ya)), replace=False)
    buffer = _Buffer(_t(xa[pick]), torch.as_tensor(ya[pick]))
    n_hold = sizes["holdout"]
    out: list[dict[str, Any]] = []
    xb, yb_clean = sample(rng, sizes["new"], SHIFT)
    for f in FLIPS:
        yb = flip(np.random.default_rng(seed * 100 + int(f * 100)), yb_clean, f)
        cand = fine_tune(champion, xb[n_hold:], yb[n_hold:], buffer, seed, sizes["epochs"])
        after = {k: true_scores(cand, *v) for k, v in truth.items()}
        t = _true_changes(before, after, "B")
        verdict = judge(champion, cand, (xb[:n_hold], yb[:n_hold]), golden, PROMOTION_RULES, seed)
        out.append(
            {
                "seed": seed,
                "kind": "retrain",
                "flip": f,
                **verdict,
                **t,
                "truth": retrain_truth(t, f),
            }
        )
    for k in range(sizes["twins"]):
        # identical quality: a retrain without drift (fresh rows of A, the same replay)
        xn, yn = sample(rng, sizes["new"], 0.0)
        twin = fine_tune(champion, xn[n_hold:], yn[n_hold:], buffer, seed * 10 + k + 1, 2)
        after = {k2: true_scores(twin, *v) for k2, v in truth.items()}
        t = _true_changes(before, after, "A")
        verdict = judge(
            champion, twin, (xn[:n_hold], yn[:n_hold]), golden, NON_INFERIORITY_RULES, seed
        )
        out.append({"seed": seed, "kind": "twin", **verdict, **t, "truth": twin_truth(t)})
    return out


def timed_run(seed: int, sizes: dict[str, int]) -> tuple[list[dict[str, Any]], float]:
    """:func:`one_run` and the CPU seconds it used (what one quiet core would take)."""
    start = time.process_time()
    got = one_run(seed, sizes)
    return got, time.process_time() - start


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact two-sided binomial confidence interval of ``k`` successes in ``n`` trials."""
    if n == 0:
        return (0.0, 1.0)
    a = (1 - level) / 2
    lo = float(stats.beta.ppf(a, k, n - k + 1)) if k > 0 else 0.0
    hi = float(stats.beta.ppf(1 - a, k + 1, n - k)) if k < n else 1.0
    return (lo, hi)


def rate(rows: list[dict[str, Any]], passed: bool) -> dict[str, Any]:
    """The share of ``rows`` whose verdict is ``passed``, with its count and 95% interval."""
    k = sum(r["passed"] == passed for r in rows)
    lo, hi = clopper_pearson(k, len(rows))
    return {
        "rate": k / len(rows) if rows else None,
        "k": k,
        "n": len(rows),
        "ci95": [round(lo, 4), round(hi, 4)],
    }


def design_noise(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Median standard error of each check's measured loss, and the margin it implies.

    The implied margin is ``(z_(1-alpha) + z_0.95) * se``: how far inside a tolerance a
    candidate's true loss must be for a check of this size to pass it 95% of the time.
    """
    z = stats.norm.ppf(1 - ALPHA)
    out: dict[str, dict[str, float]] = {}
    for kind in ("retrain", "twin"):
        names = {n for r in rows if r["kind"] == kind for n in r["measured"]}
        for name in sorted(names):
            se = [
                (r["loss_upper"][name] - r["measured"][name]) / z
                for r in rows
                if r["kind"] == kind and r["measured"].get(name) is not None
            ]
            if se:
                med = float(np.median(se))
                out[f"{kind}:{name}"] = {
                    "se": round(med, 4),
                    "implied_margin": round((z + stats.norm.ppf(0.95)) * med, 4),
                }
    return out


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    retrains = [r for r in rows if r["kind"] == "retrain"]
    twins = [r for r in rows if r["kind"] == "twin"]

    def truth(kind: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
        return [r for r in kind if r["truth"] == name]

    refuse = {str(f): rate([r for r in retrains if r["flip"] == f], False) for f in FLIPS}
    return {
        "refuse_rate": {f: v["rate"] for f, v in refuse.items()},
        "refuse_rate_detail": refuse,
        "refuse_rate_lost_beyond_tolerance": rate(truth(retrains, "lost"), False),
        "promote_rate_clean_improved": rate(truth(retrains, "clean_improved"), True),
        "promote_rate_margin_zone": rate(truth(retrains, "margin"), True),
        "false_refuse_rate": rate(truth(twins, "identical"), False)["rate"],
        "false_refuse_detail": rate(truth(twins, "identical"), False),
        "refuse_rate_twins_outside_identical_band": rate(truth(twins, "twin_other"), False),
        "alpha": ALPHA,
        "tolerances": {"golden": TOL_GOLDEN, "class": TOL_CLASS, "min_gain": MIN_GAIN},
        "margins": MARGIN,
        "design_noise": design_noise(rows),
    }


def _init() -> None:
    torch.set_num_threads(1)


def _line(label: str, r: dict[str, Any], target: str) -> str:
    value = "n/a" if r["rate"] is None else f"{r['rate']:.3f}"
    lo, hi = r["ci95"]
    return f"{label:<52}{r['k']:>4}/{r['n']:<4}{value:>7}  [{lo:.3f}, {hi:.3f}]  {target}"


def report(result: dict[str, Any]) -> None:
    """The table a person reads: every rate with its count and 95% interval."""
    print(
        f"gate bench ({result['mode']}, {result['runs']} seeded runs, "
        f"{result['seconds']} s wall, {result['cpu_seconds']} s CPU in the runs, "
        f"{result['workers']} worker(s), load average {result['load_average'][0]:.1f})"
    )
    print(f"{'':<52}{'k/n':>9}{'rate':>7}  {'95% CI (exact)':<16}  target")
    for f, r in result["refuse_rate_detail"].items():
        print(_line(f"refused, retrain on {float(f):.0%} flipped labels", r, ""))
    print(
        _line(
            "refused | truly lost > tolerance",
            result["refuse_rate_lost_beyond_tolerance"],
            ">= 0.95",
        )
    )
    print(
        _line(
            "promoted | clean, truly improved, off the margin",
            result["promote_rate_clean_improved"],
            ">= 0.95",
        )
    )
    print(
        _line(
            "promoted | clean, in the margin zone (reported only)",
            result["promote_rate_margin_zone"],
            "",
        )
    )
    print(
        _line(
            "refused | identical quality (false refusal)",
            result["false_refuse_detail"],
            f"<= {result['alpha']}",
        )
    )
    print(
        _line(
            "refused | no-drift twin outside the identical band",
            result["refuse_rate_twins_outside_identical_band"],
            "",
        )
    )
    print("noise per check (median se) and the margin it implies; margins used:", MARGIN)
    for name, v in result["design_noise"].items():
        print(f"  {name:<32} se {v['se']:.4f}  implied margin {v['implied_margin']:.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few runs, for iteration")
    ap.add_argument("--runs", type=int, help="seeded runs (default 12 quick, 100 full)")
    ap.add_argument("--seed", type=int, default=0, help="first seed")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--workers", type=int, default=1, help="processes running seeds in parallel")
    args = ap.parse_args()
    torch.set_num_threads(1)
    runs = args.runs or (12 if args.quick else 100)
    sizes = dict(SIZES, twins=2 if args.quick else SIZES["twins"])
    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    seeds = range(args.seed, args.seed + runs)
    rows: list[dict[str, Any]] = []
    cpu = 0.0
    if args.workers > 1:
        with multiprocessing.get_context("spawn").Pool(args.workers, _init) as pool:
            for got, used in pool.starmap(timed_run, [(s, sizes) for s in seeds]):
                rows.extend(got)
                cpu += used
    else:
        for seed in seeds:
            got, used = timed_run(seed, sizes)
            rows.extend(got)
            cpu += used
    result = {
        "bench": "gate",
        "mode": "quick" if args.quick else "full",
        "runs": runs,
        "sizes": sizes,
        "machine": f"{platform.machine()} {platform.processor() or ''} {platform.node()}".strip(),
        "load_average": list(os.getloadavg()),
        "load_average_at_start": load_start,
        "torch_threads": 1,
        "workers": args.workers,
        "seconds": round(time.perf_counter() - t0, 1),
        "cpu_seconds": round(cpu, 1),
        **summarize(rows),
        "rows": rows,
    }
    report(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
