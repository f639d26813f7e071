"""Benchmark of the text example's staged bootstrap (not a test): prints a table, writes JSON.

1. ``driftloop bootstrap --config configs/text.yaml`` as a subprocess in a fresh state
   directory: wall and CPU seconds of the whole command and each stage's seconds (the
   target: under 5 minutes on CPU), with the load average;
2. what each stage bought: every stage checkpoint, and a baseline trained in the same run
   (the cheapest bootstrap: the encoder frozen, a linear head fitted on the bootstrap rows
   with the finetune stage's epochs), scored on the three domains: broad data (pretrain's
   validation split), the shop tickets (v1's golden set, never trained on) and the carrier
   chat (adapt's validation split).

``--quick`` checks that the path runs, not what it buys: one epoch per stage and no exit
criteria (one epoch need not reach them), the baseline one epoch too.

Usage: python bench/text_staged.py [--quick] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runtime.config import DriftloopConfig, load_config  # noqa: E402
from runtime.store.db import Database  # noqa: E402
from runtime.store.events import EventLog  # noqa: E402
from runtime.store.unit import new_model  # noqa: E402
from runtime.store.versions import Registry  # noqa: E402
from runtime.training.retrain_job import class_positions  # noqa: E402
from runtime.training.stages import load_rows, stage_data  # noqa: E402
from strategies import finetune  # noqa: E402
from strategies.adaptation import AdaptConfig  # noqa: E402
from strategies.base import Budget, TrainRequest  # noqa: E402
from strategies.evaluation import accuracy  # noqa: E402

CONFIG = ROOT / "configs" / "text.yaml"
Split = tuple[torch.Tensor, torch.Tensor]


def run_bootstrap(state_dir: Path, quick: bool) -> tuple[DriftloopConfig, dict[str, Any]]:
    """The CLI in a subprocess on a copy of the config whose state lives in ``state_dir``
    (``quick``: one epoch per stage, no exit criteria)."""
    data = yaml.safe_load(CONFIG.read_text())
    data["state_dir"] = str(state_dir)
    data["source"]["path"] = str((CONFIG.parent / data["source"]["path"]).resolve())
    data["bootstrap"]["data"] = str((CONFIG.parent / data["bootstrap"]["data"]).resolve())
    for st in data["stages"]:
        if "data" in st:
            st["data"] = str((CONFIG.parent / st["data"]).resolve())
        if quick:
            st["budget"]["epochs"] = 1
            st.pop("exit", None)
    path = state_dir.parent / "text.yaml"
    path.write_text(yaml.safe_dump(data))
    driftloop = Path(sys.executable).parent / "driftloop"
    load_before = os.getloadavg()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run([str(driftloop), "bootstrap", "--config", str(path)],
                         capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(out.stdout, end="")
    if out.returncode != 0:
        raise SystemExit(f"bootstrap failed: {out.stderr.strip()}")
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return load_config(path), {"wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
                               "load_before": [round(v, 2) for v in load_before],
                               "load_after": [round(v, 2) for v in os.getloadavg()],
                               "output": out.stdout.splitlines()}


def domains(cfg: DriftloopConfig, registry: Registry) -> dict[str, Split]:
    """Held-out rows of each domain, the same splits the stages and the gate use."""
    golden = registry.load("v1").tensors["golden"]
    out = {"shop (v1 golden)": (golden["x"].float(), golden["y"])}
    dummy = (torch.zeros(0), torch.zeros(0))
    for i, st in enumerate(cfg.stages, start=1):
        if st.data is not None:
            _, val, _ = stage_data(cfg, st, i, (dummy, dummy))
            label = "broad" if st.name == "pretrain" else "carrier"
            out[f"{label} ({st.name} val)"] = val
    return out


def baseline(cfg: DriftloopConfig) -> torch.nn.Module:
    """The cheapest bootstrap: frozen encoder, linear head on the bootstrap training rows."""
    assert cfg.bootstrap.data is not None
    x, y_raw = load_rows(cfg.bootstrap.data, cfg.schema)
    y = class_positions(y_raw, cfg.schema.classes)
    n = len(y)  # the split of runtime.training.bootstrap: golden, validation, training
    perm = np.random.default_rng(cfg.seed).permutation(n)
    n_gold = max(1, round(n * cfg.bootstrap.golden_fraction))
    n_val = max(1, round(n * cfg.bootstrap.validation_fraction))
    val, train = perm[n_gold:n_gold + n_val], perm[n_gold + n_val:]
    model = new_model(cfg, seed=cfg.seed)
    stage = next(st for st in cfg.stages if st.data is None)
    strategy = finetune.build(finetune.Config(lr=3e-3, batch_size=32, adapt=AdaptConfig(
        freeze=["bert.*"])))

    def t(idx: np.ndarray) -> Split:
        return torch.as_tensor(x[idx], dtype=torch.float32), torch.as_tensor(y[idx])

    strategy.train(TrainRequest(model, *t(train), budget=Budget(epochs=stage.budget.epochs),
                                seed=cfg.seed, val=t(val)))
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one epoch per stage, no exits")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        cfg, timing = run_bootstrap(Path(tmp) / "state", args.quick)
        db = Database.for_state_dir(cfg.state_dir, None)
        registry = Registry(db, cfg.state_dir / "models", EventLog(db))
        meta = registry.get("v1").meta
        sets = domains(cfg, registry)
        rows: dict[str, dict[str, float]] = {}
        for st in meta["stages"]:
            model = new_model(cfg)
            model.load_state_dict(load_file(st["checkpoint"]))
            rows[f"after {st['stage']}"] = {k: accuracy(model, *v) for k, v in sets.items()}
        started = time.perf_counter()
        base = baseline(cfg)
        base_seconds = time.perf_counter() - started
        rows["baseline: frozen encoder + head"] = {k: accuracy(base, *v) for k, v in sets.items()}
        db.dispose()
    stage_seconds = {st["stage"]: st["metrics"]["seconds"] for st in meta["stages"]}
    print(f"\nbootstrap: {timing['wall_seconds']} s wall, {timing['cpu_seconds']} s CPU "
          f"(load average {timing['load_before'][0]} before, {timing['load_after'][0]} after); "
          f"stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in stage_seconds.items()))
    names = list(sets)
    print("\n| checkpoint | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for label, accs in rows.items():
        print(f"| {label} | " + " | ".join(f"{accs[n]:.3f}" for n in names) + " |")
    print(f"(baseline trained in {base_seconds:.1f} s)")
    result = {"bench": "text_staged", "quick": args.quick, "machine": platform.platform(),
              "cpus": os.cpu_count(),
              "torch_threads": cfg.torch_threads, "timing": timing,
              "stage_seconds": stage_seconds, "accuracy": rows,
              "eval_rows": {k: len(v[1]) for k, v in sets.items()},
              "baseline_seconds": round(base_seconds, 1)}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
