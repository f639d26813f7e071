"""One worker of tests/strategies/test_distributed.py: a seeded fit with rehearsal.

Run under ``torch.distributed.run`` (gloo, one process group) or alone; writes this
rank's final weights' digest, held-out accuracy and result to ``OUT/rank<r>.json``.
With ``DIE_AT_EPOCH`` set, rank 1 kills itself after that epoch (the crash test); with
``STRATEGIES`` set, it trains EWC, LwF, DER and EMA instead (tests that they hold under DDP).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch
from torch import distributed as dist

from strategies.base import Budget, OptimizerSpec, Recipe, TrainRequest
from strategies.evaluation import accuracy
from strategies.loop import fit


def data(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded two-class problem with a shifted boundary (the demo's kind of drift)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0.3).long()


STRATEGIES: dict[str, dict[str, Any]] = {
    # the strategies that do more than a gradient step, as the runtime builds them
    "ewc": {"kind": "ewc", "mix": 0.25, "strength": 100.0},
    "lwf": {"kind": "lwf", "mix": 0.25},
    "der": {"kind": "der", "mix": 0.25},
    "ema": {"kind": "replay", "mix": 0.25, "adapt": {"ema_decay": 0.9}},
}


def _digest(model: torch.nn.Module) -> str:
    return hashlib.sha256(b"".join(p.detach().numpy().tobytes()
                                   for p in model.parameters())).hexdigest()


def strategies(out: Path, rank: int) -> None:
    """Each of :data:`STRATEGIES` trained from the same start on a TensorBuffer (what a
    worker of a distributed retrain trains from), per-process batch ``BATCH`` (32);
    one ``<name>-rank<r>.json`` each."""
    from pydantic import TypeAdapter

    from strategies.distributed import TensorBuffer
    from strategies.registry import StrategyConfig
    from strategies.registry import build as build_strategy

    x, y = data(2, 1200)
    tx, ty = data(3, 2000)
    for name, raw in STRATEGIES.items():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(),
                                    torch.nn.Linear(32, 2))
        cfg = TypeAdapter(StrategyConfig).validate_python(
            {**raw, "lr": 3e-3, "batch_size": int(os.environ.get("BATCH", "32")),
             "patience": None})
        buffer = TensorBuffer(*data(1, 200))
        result = build_strategy(cfg).train(TrainRequest(
            model, x, y, buffer=buffer, budget=Budget(epochs=6), seed=7, device="cpu"))
        logits = buffer.logits()
        (out / f"{name}-rank{rank}.json").write_text(json.dumps({
            "digest": _digest(model), "accuracy": accuracy(model, tx, ty),
            "steps": result.steps, "world_size": result.extra.get("world_size", 1),
            "logits": None if logits is None else hashlib.sha256(
                logits.numpy().tobytes()).hexdigest()}))


def main() -> int:
    out = Path(sys.argv[1])
    if "WORLD_SIZE" in os.environ:
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=30))
    rank = dist.get_rank() if dist.is_initialized() else 0
    if os.environ.get("STRATEGIES"):
        strategies(out, rank)
        if dist.is_initialized():
            dist.destroy_process_group()
        return 0
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    # rehearsal rows as plain tensors: avalanche (behind the buffers) refuses to be
    # imported in a non-zero rank of a torchrun session (it creates a logger)
    rehearsal = data(1, 200)
    x, y = data(2, 1200)
    die_at = os.environ.get("DIE_AT_EPOCH")

    def progress(p):  # the loop's progress callback
        if die_at is not None and rank == 1 and p.epoch >= int(die_at):
            os.kill(os.getpid(), signal.SIGKILL)

    result = fit(TrainRequest(model, x, y, budget=Budget(epochs=6), seed=7, device="cpu",
                              progress=progress, checkpoint=out / "ckpt"),
                 Recipe(batch_size=32, optimizer=OptimizerSpec(3e-3, 0.0), mix=0.25,
                        rehearsal=rehearsal))
    tx, ty = data(3, 2000)
    digest = _digest(model)
    (out / f"rank{rank}.json").write_text(json.dumps({
        "digest": digest, "accuracy": accuracy(model, tx, ty), "steps": result.steps,
        "epochs": result.epochs, "world_size": result.extra.get("world_size", 1)}))
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
