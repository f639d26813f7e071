"""Running a strategy through a benchmark's experiences, as the daemon's retrains do, and
scoring it: accuracy, forgetting, compute (:mod:`continual` documents the protocol)."""

from __future__ import annotations

import copy
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from continual_data import Benchmark, Split  # noqa: E402

from strategies.base import Budget, RehearsalBuffer, TrainRequest, TrainResult  # noqa: E402
from strategies.evaluation import accuracy  # noqa: E402
from strategies.models import (  # noqa: E402
    build_model,
    fit_normalization,
)
from strategies.registry import (  # noqa: E402
    BufferConfig,
    StrategyConfig,
    build,
    build_buffer,
)


def strategies(
    bench: Benchmark, settings: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Every strategy's config (plus the benchmark's ``epochs``/``validate`` keys).

    ``settings`` (one benchmark's entry of the tuning record, ``--protocol tuned``):
    ``joint`` and ``replay`` as tuned; every other warm-started strategy takes replay's
    budget (batch size, learning rate, epochs, validation) and weight averaging (its
    ``adapt``, where the record chose one) with plain cross-entropy.
    Without it, the fixed budgets of ``bench.budgets`` (``--protocol fixed``/``earlier``).
    """
    if settings is not None:
        rp = settings["replay"]
        warm = {k: rp[k] for k in ("lr", "batch_size", "patience", "epochs", "validate")}
        if "adapt" in rp:  # the weight averaging chosen for replay
            warm["adapt"] = dict(rp["adapt"])
    else:
        b = bench.budgets
        warm = {
            "lr": bench.lr * b.warm_lr_scale,
            "batch_size": b.warm_batch_size,
            "patience": b.warm_patience,
        }
        rp = {"kind": "replay", **warm, "mix": 0.5}
    return {
        "finetune": {"kind": "finetune", **warm},
        "replay": dict(rp),
        "der": {"kind": "der", **warm, "mix": 0.5, "alpha": 0.3},
        "lwf": {"kind": "lwf", **warm, "alpha": 1.0, "temperature": 2.0},
        "ewc": {"kind": "ewc", **warm, "strength": 1e4},
        "ewc+replay": {"kind": "ewc", **warm, "strength": 1e3, "mix": 0.5},
        "joint": dict(settings["joint"])
        if settings is not None
        else {
            "kind": "joint",
            "lr": bench.lr,
            "batch_size": 64,
            "patience": bench.budgets.scratch_patience,
        },
    }


def compute(r: TrainResult) -> int:
    """Rows through training steps plus rows through extra forward passes."""
    return (
        r.samples_processed
        + int(r.extra.get("validation_samples", 0))
        + int(r.extra.get("overhead_samples", 0))
    )


def _val_until(bench: Benchmark, i: int) -> Split:
    vals = [e.val for e in bench.experiences[: i + 1]]
    return torch.cat([v[0] for v in vals]), torch.cat([v[1] for v in vals])


def _accuracies(bench: Benchmark, model: torch.nn.Module, seen: list[str]) -> dict[str, float]:
    return {d: accuracy(model, *bench.tests[d]) for d in seen}


def scratch_recipe(bench: Benchmark, scratch: dict[str, Any] | None) -> dict[str, Any]:
    """The bootstrap's ``lr``, ``batch_size`` and ``patience``: ``scratch``'s (a ``joint``
    config), else batch 64 at the benchmark's learning rate and scratch patience."""
    if scratch is not None:
        return {k: scratch[k] for k in ("lr", "batch_size", "patience")}
    return {"lr": bench.lr, "batch_size": 64, "patience": bench.budgets.scratch_patience}


def bootstrap(
    bench: Benchmark, seed: int, scratch: dict[str, Any] | None = None
) -> tuple[torch.nn.Module, int, int]:
    """The first experience: from scratch to convergence; (model, compute, epochs).

    ``scratch``: the from-scratch recipe (a ``joint`` config: its ``lr``, ``batch_size``
    and ``patience``); without it, batch 64 at the benchmark's learning rate with the
    benchmark's scratch patience (``--protocol fixed``/``earlier``)."""
    first = bench.experiences[0]
    model = build_model(bench.model, first.train[0].shape[1], bench.n_classes, seed=seed)
    fit_normalization(model, first.train[0])
    b = bench.budgets
    cfg = {"kind": "finetune", **scratch_recipe(bench, scratch)}
    r = _build(cfg).train(TrainRequest(model, *first.train, budget=Budget(epochs=b.scratch_epochs),
                                       seed=seed, val=first.val, device="cpu"))
    return model, compute(r), r.epochs


def _build(cfg_dict: dict[str, Any]) -> Any:
    from pydantic import TypeAdapter

    return build(TypeAdapter(StrategyConfig).validate_python(cfg_dict))


def _buffer(bench: Benchmark, is_joint: bool, seed: int) -> RehearsalBuffer:
    total = sum(len(e.train[1]) for e in bench.experiences)
    return build_buffer(BufferConfig(capacity=total) if is_joint else bench.buffer, seed=seed)


def run_one(
    bench: Benchmark, cfg_dict: dict[str, Any], seed: int, start: tuple[torch.nn.Module, int, int]
) -> dict[str, Any]:
    """One strategy over the experiences after the bootstrap, for one seed.

    ``cfg_dict`` is the strategy's config plus two keys of the benchmark's own:
    ``epochs`` (the budget; default: the benchmark's) and ``validate`` (default true:
    evaluate the golden rows after every epoch and keep the best epoch; false: keep the
    last epoch, no validation passes).
    """
    cfg_dict = dict(cfg_dict)
    validate = cfg_dict.pop("validate", True)
    is_joint = cfg_dict["kind"] == "joint"
    b = bench.budgets
    budget = Budget(epochs=cfg_dict.pop("epochs", b.scratch_epochs if is_joint else b.warm_epochs))
    strategy = _build(cfg_dict)
    model, samples, boot_epochs = copy.deepcopy(start[0]), start[1], start[2]
    buffer = _buffer(bench, is_joint, seed)
    first = bench.experiences[0]
    buffer.add(*first.train)
    seen = [first.distribution]
    matrix = [_accuracies(bench, model, seen)]
    epochs = [boot_epochs]
    began = time.perf_counter()
    for i, exp in enumerate(bench.experiences[1:], start=1):
        r = strategy.train(TrainRequest(model, *exp.train, buffer=buffer, budget=budget,
                                        seed=seed + i,
                                        val=_val_until(bench, i) if validate else None,
                                        device="cpu"))
        samples += compute(r)
        epochs.append(r.epochs)
        buffer.add(*exp.train)
        if exp.distribution not in seen:
            seen.append(exp.distribution)
        matrix.append(_accuracies(bench, model, seen))
    final, last = matrix[-1], bench.experiences[-1].distribution
    drops = [
        max(row[d] for row in matrix[:-1] if d in row) - final[d]
        for d in seen
        if d != last and any(d in row for row in matrix[:-1])
    ]
    return {
        "avg_accuracy": float(np.mean([final[d] for d in seen])),
        "forgetting": float(np.mean(drops)) if drops else 0.0,
        "samples_processed": samples,
        "seconds": round(time.perf_counter() - began, 2),
        "epochs": epochs,
        "final_accuracy": final,
        "accuracy_matrix": matrix,
    }


def _stats(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def aggregate(label: str, cfg: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"strategy": label, "config": cfg, "seeds": len(runs)}
    for key in ("avg_accuracy", "forgetting", "samples_processed", "seconds"):
        mean, sd = _stats([float(r[key]) for r in runs])
        out[key], out[f"{key}_sd"] = mean, sd
    out["per_seed"] = runs
    return out


def checks(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets for replay, on the means over seeds (and seed by seed)."""
    ft, rp, jt = rows.get("finetune"), rows.get("replay"), rows.get("joint")
    if not (ft and rp and jt):
        return {}
    per_seed = list(zip(ft["per_seed"], rp["per_seed"], jt["per_seed"], strict=True))
    return {
        "replay_forgetting_over_finetune": rp["forgetting"] / ft["forgetting"]
        if ft["forgetting"] > 0
        else None,
        "replay_forgetting_at_most_third_of_finetune": rp["forgetting"] <= ft["forgetting"] / 3,
        "replay_gap_to_joint_points": 100 * (jt["avg_accuracy"] - rp["avg_accuracy"]),
        "replay_within_3_points_of_joint": jt["avg_accuracy"] - rp["avg_accuracy"] <= 0.03,
        "replay_compute_over_joint": rp["samples_processed"] / jt["samples_processed"],
        "replay_compute_at_most_quarter_of_joint": rp["samples_processed"]
        <= 0.25 * jt["samples_processed"],
        "seeds_within_3_points": sum(
            j["avg_accuracy"] - r["avg_accuracy"] <= 0.03 for _, r, j in per_seed
        ),
        "seeds_compute_at_most_quarter": sum(
            r["samples_processed"] <= 0.25 * j["samples_processed"] for _, r, j in per_seed
        ),
        "seeds_forgetting_at_most_third": sum(
            r["forgetting"] <= f["forgetting"] / 3 for f, r, _ in per_seed
        ),
    }


def run_benchmark(
    bench: Benchmark,
    plan: dict[str, dict[str, Any]],
    seeds: list[int],
    verbose: bool = True,
    scratch: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every strategy of ``plan`` over ``seeds``, from one bootstrap a seed (``scratch``:
    its recipe, see ``bootstrap``)."""
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in plan}
    for seed in seeds:
        start = bootstrap(bench, seed, scratch)
        for label, cfg in plan.items():
            runs[label].append(run_one(bench, cfg, seed, start))
            r = runs[label][-1]
            if not verbose:
                continue
            print(
                f"    seed {seed} {label:<11} acc {r['avg_accuracy']:.3f} "
                f"forgetting {r['forgetting']:+.3f} samples {r['samples_processed']:>9,} "
                f"epochs {r['epochs']} {r['seconds']:.1f}s",
                flush=True,
            )
    rows = {label: aggregate(label, plan[label], runs[label]) for label in plan}
    return {
        "strategies": rows,
        "checks": checks(rows),
        "experiences": [e.distribution for e in bench.experiences],
        "bootstrap": scratch_recipe(bench, scratch),
        "budgets": asdict(bench.budgets),
        "buffer": bench.buffer.model_dump(),
    }


def print_table(name: str, result: dict[str, Any]) -> None:
    print(f"\n  {name}: {'strategy':<11} {'avg_accuracy':>15} {'forgetting':>16} {'samples':>20}")
    for label, row in result["strategies"].items():
        print(
            f"  {'':<{len(name)}}  {label:<11} {row['avg_accuracy']:.3f} ± "
            f"{row['avg_accuracy_sd']:.3f}   {row['forgetting']:+.3f} ± "
            f"{row['forgetting_sd']:.3f}   {row['samples_processed']:>10,.0f} ± "
            f"{row['samples_processed_sd']:>7,.0f}"
        )
    for k, v in result["checks"].items():
        print(f"    {k}: {v:.3f}" if isinstance(v, float) else f"    {k}: {v}")
