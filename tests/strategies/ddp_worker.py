"""One worker of tests/strategies/test_distributed.py: a seeded fit with rehearsal.

Run under ``torch.distributed.run`` (gloo, one process group) or alone; writes this
rank's final weights' digest, held-out accuracy and result to ``OUT/rank<r>.json``.
With ``DIE_AT_EPOCH`` set, rank 1 kills itself after that epoch (the crash test).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import signal
import sys
from pathlib import Path

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


def main() -> int:
    out = Path(sys.argv[1])
    if "WORLD_SIZE" in os.environ:
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=30))
    rank = dist.get_rank() if dist.is_initialized() else 0
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
    digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes()
                                     for p in model.parameters())).hexdigest()
    (out / f"rank{rank}.json").write_text(json.dumps({
        "digest": digest, "accuracy": accuracy(model, tx, ty), "steps": result.steps,
        "epochs": result.epochs, "world_size": result.extra.get("world_size", 1)}))
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
