"""Throughput of driftloop's loop on N processes (DDP) against a plain PyTorch DDP script.

Same model, data, batch composition (half new rows, half rehearsal draws), optimizer
(Adam; fused on CUDA) and precision as bench/throughput.py, measured in the same run:

- ``single``: both loops in this process, no launcher (bench/throughput.py's figure);
- for each N of ``--nproc``: ``torch.distributed.run --standalone --nproc_per_node N``
  starts this file as N workers, once with driftloop's loop (``strategies.loop.fit``:
  DDP and ``DistributedSampler`` shards inside a process group of N > 1, the plain
  single-process loop at N = 1, as the daemon runs it) and once with a textbook DDP
  loop (``DistributedDataParallel`` + ``DistributedSampler``, wrapped at N > 1). The
  launches alternate; each worker warms up, then times ``--repeats`` runs between
  barriers. A run's samples/s is the sum of every rank's samples over the slowest
  rank's time. The batch is per process (effective batch × N).

``--device cpu`` (gloo, one thread a process): the daemon's kind of model.
``--device cuda --backend nccl``: bench/throughput.py's 150 M-parameter MLP on
``cuda:LOCAL_RANK`` (one GPU per process).

Usage: python bench/distributed.py [--device cpu|cuda] [--backend gloo|nccl]
       [--nproc 1,2] [--repeats R] [--quick] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from throughput import CONFIGS, measure, mlp, ours  # noqa: E402


def plain_ddp(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, rx: torch.Tensor, ry: torch.Tensor,
    *, epochs: int, batch: int, lr: float, seed: int, dev: torch.device,
) -> int:
    """The baseline: a textbook DDP loop on this rank's ``DistributedSampler`` shard,
    tensors already on the device, the epoch's order and rehearsal draws made up front."""
    size, rank = dist.get_world_size(), dist.get_rank()
    cuda = dev.type == "cuda"
    if size > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if cuda else None)
    opt = torch.optim.Adam(model.parameters(), lr=lr, fused=cuda)
    sampler = DistributedSampler(range(len(x)), num_replicas=size, rank=rank, seed=seed)
    g = torch.Generator().manual_seed(seed + rank)
    n_rep = batch // 2
    n_new = batch - n_rep
    model.train()
    samples = 0
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        perm = torch.tensor(list(iter(sampler))).to(dev)
        n_batches = math.ceil(len(perm) / n_new)
        rep = torch.randint(0, len(rx), (n_batches, n_rep), generator=g).to(dev)
        for b in range(n_batches):
            idx = perm[b * n_new : (b + 1) * n_new]
            xb = torch.cat([x[idx], rx[rep[b]]])
            yb = torch.cat([y[idx], ry[rep[b]]])
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
                logits = model(xb)
            loss = nn.functional.cross_entropy(logits.float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            samples += len(yb)
    return samples


def _data(cfg: dict[str, Any], dev: torch.device) -> tuple[torch.Tensor, ...]:
    """bench/throughput.py's data: the same on every rank (each takes its shard)."""
    g = torch.Generator().manual_seed(0)
    d_in, n_cls = cfg["widths"][0], cfg["widths"][-1]
    x = torch.randn(cfg["rows"], d_in, generator=g)
    w = torch.randn(d_in, n_cls, generator=g)
    rx = torch.randn(cfg["buffer"], d_in, generator=g)
    return x.to(dev), (x @ w).argmax(dim=1).to(dev), rx.to(dev), (rx @ w).argmax(dim=1).to(dev)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def worker(args: argparse.Namespace) -> None:
    """One rank: warm up, then time ``repeats`` runs; rank 0 writes the rates."""
    local = int(os.environ["LOCAL_RANK"])
    dev = torch.device("cuda", local) if args.device == "cuda" else torch.device("cpu")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    else:
        torch.set_num_threads(1)
    dist.init_process_group(args.backend, timeout=datetime.timedelta(seconds=120))
    cfg = _config(args)
    x, y, rx, ry = _data(cfg, dev)
    template = mlp(cfg["widths"], seed=0)
    fn = ours if args.impl == "ours" else plain_ddp
    kw = {"batch": cfg["batch"], "lr": cfg["lr"], "seed": 0, "dev": dev}

    def fresh() -> nn.Module:
        m = mlp(cfg["widths"], seed=0)
        m.load_state_dict(template.state_dict())
        return m.to(dev)

    n_warm = cfg["batch"] * 8 * dist.get_world_size()
    fn(fresh(), x[:n_warm], y[:n_warm], rx, ry, epochs=1, **kw)
    rates = []
    for _ in range(args.repeats):
        m = fresh()
        _sync(dev)
        dist.barrier()
        t0 = time.perf_counter()
        n = fn(m, x, y, rx, ry, epochs=cfg["epochs"], **kw)
        _sync(dev)
        took = torch.tensor([time.perf_counter() - t0], dtype=torch.float64, device=dev)
        total = torch.tensor([float(n)], dtype=torch.float64, device=dev)
        dist.all_reduce(took, op=dist.ReduceOp.MAX)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        rates.append(float(total.item() / took.item()))
    if dist.get_rank() == 0:
        Path(args.out).write_text(json.dumps({"rates": rates,
                                              "world_size": dist.get_world_size()}))
    dist.destroy_process_group()


def _config(args: argparse.Namespace) -> dict[str, Any]:
    cfg = dict(CONFIGS[args.device])
    if args.quick:
        cfg["rows"] //= 4
    return cfg


def launch(args: argparse.Namespace, impl: str, n: int, out: Path) -> list[float]:
    """``repeats`` samples/s of ``impl`` on ``n`` workers started by torch.distributed.run."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={n}", "--max_restarts=0", str(Path(__file__).resolve()),
           "--worker", "--impl", impl, "--device", args.device, "--backend", args.backend,
           "--repeats", str(args.repeats), "--out", str(out)] + (["--quick"] if args.quick else [])
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if run.returncode != 0:
        sys.exit(f"{impl} on {n} process(es) failed: {run.stderr.strip()[-1500:]}")
    rates: list[float] = json.loads(out.read_text())["rates"]
    return rates


def _row(name: str, n: int, ours_r: list[float], plain_r: list[float]) -> dict[str, Any]:
    return {"launcher": name, "nproc": n,
            "ours_samples_per_s_median": statistics.median(ours_r),
            "plain_samples_per_s_median": statistics.median(plain_r),
            "ours_samples_per_s_best": max(ours_r), "plain_samples_per_s_best": max(plain_r),
            "ratio_median": statistics.median(ours_r) / statistics.median(plain_r),
            "ratio_best": max(ours_r) / max(plain_r), "all": {"ours": ours_r, "plain": plain_r}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--backend", choices=["gloo", "nccl"])
    ap.add_argument("--nproc", help="comma-separated process counts (cpu: 1,2; cuda: 1)")
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--rounds", type=int, default=2, help="alternating launches of each")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--impl", choices=["ours", "plain"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.backend = args.backend or ("nccl" if args.device == "cuda" else "gloo")
    args.repeats = args.repeats or (3 if args.quick else 5)
    if args.worker:
        worker(args)
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: CUDA is not available here")
    nprocs = [int(n) for n in (args.nproc or ("1" if args.device == "cuda" else "1,2")).split(",")]
    cfg = _config(args)
    load_before = os.getloadavg()
    rows = []
    dev = torch.device(args.device)
    if dev.type == "cpu":
        torch.set_num_threads(1)
    single = measure(cfg, dev, args.repeats)
    if dev.type == "cuda":
        torch.cuda.empty_cache()  # the workers share this GPU
    rows.append(_row("none", 1, single["all"]["ours"], single["all"]["plain"]))
    with tempfile.TemporaryDirectory() as tmp:
        for n in nprocs:
            got: dict[str, list[float]] = {"ours": [], "plain": []}
            for r in range(args.rounds):
                for impl in ("ours", "plain") if r % 2 == 0 else ("plain", "ours"):
                    got[impl] += launch(args, impl, n, Path(tmp) / f"{impl}{n}.json")
            rows.append(_row("torchrun", n, got["ours"], got["plain"]))
    machine = {"platform": platform.platform(), "python": platform.python_version(),
               "torch": torch.__version__, "cpus": os.cpu_count(),
               "load_before": load_before, "load_after": os.getloadavg()}
    if dev.type == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(0)
    print(f"{args.device} ({args.backend}): model {cfg['widths']} ({single['parameters']:,} "
          f"parameters), per-process batch {cfg['batch']}, {cfg['rows']} rows x "
          f"{cfg['epochs']} epochs, {args.repeats} repeats x {args.rounds} rounds; "
          f"load {load_before[0]:.1f} -> {machine['load_after'][0]:.1f} on {os.cpu_count()} CPUs")
    print(f"  {'launcher':<9} {'N':>2} {'ours samples/s':>15} {'plain samples/s':>16} "
          f"{'ratio (median)':>15} {'ratio (best)':>13}")
    for row in rows:
        print(f"  {row['launcher']:<9} {row['nproc']:>2} {row['ours_samples_per_s_median']:>15,.0f}"
              f" {row['plain_samples_per_s_median']:>16,.0f} {row['ratio_median']:>15.3f}"
              f" {row['ratio_best']:>13.3f}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "device": args.device,
                                         "backend": args.backend, "config": cfg,
                                         "rows": rows}, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
