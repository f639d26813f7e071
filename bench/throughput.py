"""Throughput of driftloop's training loop against a plain PyTorch loop (not a test).

Same model, same data, same batch composition (half new rows, half drawn from a
rehearsal set), same optimizer (Adam; fused on CUDA), same precision (bf16 autocast on
CUDA, float32 on CPU), measured in the same run: the two loops alternate, each repeat
starts from the same initial weights, and the best and median samples/s of each are
reported. One short warm-up run of each loop comes first; on CUDA the clock is read
after ``torch.cuda.synchronize()``.

- ``--device cpu``: the daemon's kind of model (MLP 9 → 64 → 64 → 2) on one thread.
- ``--device cuda``: a model large enough to occupy an H100 (MLP 1024 → 3 × 8192 → 1000,
  about 150 M parameters, batches of 4096 rows).

Usage: python bench/throughput.py [--device cpu|cuda] [--quick] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from strategies.base import Budget, OptimizerSpec, Recipe, TrainRequest  # noqa: E402
from strategies.loop import fit  # noqa: E402


def mlp(widths: list[int], seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            layers += [nn.Linear(a, b), nn.ReLU()]
        return nn.Sequential(*layers[:-1])


def plain_loop(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, rx: torch.Tensor, ry: torch.Tensor,
    *, epochs: int, batch: int, lr: float, seed: int, dev: torch.device,
) -> int:
    """The baseline: a textbook loop, tensors already on the device, no DataLoader, the
    epoch's shuffle and rehearsal draws made up front (as ours does)."""
    g = torch.Generator().manual_seed(seed)
    cuda = dev.type == "cuda"
    opt = torch.optim.Adam(model.parameters(), lr=lr, fused=cuda)
    model.train()
    n_rep = batch // 2
    n_new = batch - n_rep
    samples = 0
    n_batches = -(-len(x) // n_new)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g).to(dev)
        rep = torch.randint(0, len(rx), (n_batches, n_rep), generator=g).to(dev)
        for b, i in enumerate(range(0, len(x), n_new)):
            idx = perm[i : i + n_new]
            ridx = rep[b]
            xb = torch.cat([x[idx], rx[ridx]])
            yb = torch.cat([y[idx], ry[ridx]])
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
                logits = model(xb)
            loss = nn.functional.cross_entropy(logits.float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            samples += len(yb)
    return samples


def ours(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, rx: torch.Tensor, ry: torch.Tensor,
    *, epochs: int, batch: int, lr: float, seed: int, dev: torch.device,
) -> int:
    r = fit(TrainRequest(model, x, y, budget=Budget(epochs=epochs), seed=seed, device=str(dev)),
            Recipe(rehearsal=(rx, ry), mix=0.5, batch_size=batch,
                   optimizer=OptimizerSpec(lr=lr, weight_decay=0.0)))
    return r.samples_processed


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def measure(cfg: dict[str, Any], dev: torch.device, repeats: int) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    d_in, n_cls = cfg["widths"][0], cfg["widths"][-1]
    x = torch.randn(cfg["rows"], d_in, generator=g)
    w = torch.randn(d_in, n_cls, generator=g)
    y = (x @ w).argmax(dim=1)
    rx = torch.randn(cfg["buffer"], d_in, generator=g)
    ry = (rx @ w).argmax(dim=1)
    x, y, rx, ry = x.to(dev), y.to(dev), rx.to(dev), ry.to(dev)
    template = mlp(cfg["widths"], seed=0).to(dev)
    n_params = sum(p.numel() for p in template.parameters())
    kw = {"batch": cfg["batch"], "lr": cfg["lr"], "seed": 0, "dev": dev}

    def fresh() -> nn.Module:
        m = mlp(cfg["widths"], seed=0).to(dev)
        m.load_state_dict(template.state_dict())
        return m

    for fn in (ours, plain_loop):  # warm-up: lazy initialisation, handles, autotuning, caches
        fn(fresh(), x[: cfg["batch"] * 8], y[: cfg["batch"] * 8], rx, ry, epochs=1, **kw)
    rates: dict[str, list[float]] = {"ours": [], "plain": []}
    for _ in range(repeats):
        for name, fn in (("ours", ours), ("plain", plain_loop)):
            m = fresh()
            _sync(dev)
            t0 = time.perf_counter()
            n = fn(m, x, y, rx, ry, epochs=cfg["epochs"], **kw)
            _sync(dev)
            rates[name].append(n / (time.perf_counter() - t0))
    return {
        **{k: v for k, v in cfg.items()},
        "parameters": n_params,
        "ours_samples_per_s_best": max(rates["ours"]),
        "plain_samples_per_s_best": max(rates["plain"]),
        "ours_samples_per_s_median": statistics.median(rates["ours"]),
        "plain_samples_per_s_median": statistics.median(rates["plain"]),
        "ratio_best": max(rates["ours"]) / max(rates["plain"]),
        "ratio_median": statistics.median(rates["ours"]) / statistics.median(rates["plain"]),
        # each repeat runs the two back to back: the per-pair ratio cancels slow drifts
        # in the machine's load, so its median is the headline figure on a shared CPU
        "ratio_paired_median": statistics.median(
            a / b for a, b in zip(rates["ours"], rates["plain"], strict=True)
        ),
        "all": rates,
    }


CONFIGS = {
    "cpu": {"widths": [9, 64, 64, 2], "rows": 20_000, "buffer": 2_000, "batch": 64,
            "epochs": 3, "lr": 3e-3},
    "cuda": {"widths": [1024, 8192, 8192, 8192, 1000], "rows": 262_144, "buffer": 65_536,
             "batch": 4096, "epochs": 2, "lr": 1e-4},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    dev = torch.device(args.device)
    cfg = dict(CONFIGS[args.device])
    if args.quick:
        cfg["rows"] //= 4
    if dev.type == "cpu":
        torch.set_num_threads(1)
    repeats = args.repeats or (3 if args.quick else 5)
    machine: dict[str, Any] = {"platform": platform.platform(), "processor": platform.processor(),
                               "python": platform.python_version(), "torch": torch.__version__,
                               "threads": torch.get_num_threads()}
    if dev.type == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(dev)
    res = measure(cfg, dev, repeats)
    out = {"machine": machine, "device": args.device, "result": res}
    print(f"{args.device}: model {cfg['widths']} ({res['parameters']:,} parameters), "
          f"batch {cfg['batch']}, {cfg['rows']} new rows × {cfg['epochs']} epochs, "
          f"{repeats} repeats")
    print(f"  ours   {res['ours_samples_per_s_best']:>12,.0f} samples/s best, "
          f"{res['ours_samples_per_s_median']:>12,.0f} median")
    print(f"  plain  {res['plain_samples_per_s_best']:>12,.0f} samples/s best, "
          f"{res['plain_samples_per_s_median']:>12,.0f} median")
    print(f"  ratio  {res['ratio_best']:.3f} (best)  {res['ratio_median']:.3f} (median)  "
          f"{res['ratio_paired_median']:.3f} (median of back-to-back pairs)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
