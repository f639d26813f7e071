"""Every strategy trains a tiny model on CPU to exactly the recorded weights and losses.

The recorded values pin the loop's arithmetic and its random draws: a refactor of the
loop or of a strategy that changes either changes a digest. They hold for the torch
version and the CPU they were recorded with (another version or another CPU's kernels may
order float operations differently), so the test skips under another torch and keeps one
record per CPU (:data:`RECORDED_BY_CPU`); record a new one with
``python -m tests.strategies.test_golden`` (it prints the values, headed by the CPU).
"""

from __future__ import annotations

import hashlib
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from strategies import der, ewc, finetune, joint, lwf, replay
from strategies.adaptation import AdaptConfig, LoraConfig
from strategies.base import Budget, Strategy, TrainRequest, TrainResult
from strategies.models import MLPConfig, build_model, fit_normalization
from strategies.registry import BufferConfig, build_buffer

Task = tuple[torch.Tensor, torch.Tensor]
TORCH = "2.14.1+cu130"
"""The torch version the values below were recorded with."""

CASES: dict[str, Any] = {
    "finetune": finetune.Config(lr=5e-3, batch_size=32, patience=2,
                                adapt=AdaptConfig(warmup_steps=4, schedule="cosine")),
    "replay": replay.Config(lr=5e-3, batch_size=32, mix=0.5, loss="balanced"),
    "replay-ema": replay.Config(lr=5e-3, batch_size=32, mix=0.25, patience=None,
                                adapt=AdaptConfig(ema_decay=0.9, validation_fraction=0.2,
                                                  max_grad_norm=1.0)),
    "ewc": ewc.Config(lr=5e-3, batch_size=32, strength=100.0, mix=0.25,
                      adapt=AdaptConfig(optimizer="adamw", layer_decay=0.5)),
    "lwf": lwf.Config(lr=5e-3, batch_size=32, mix=0.25,
                      adapt=AdaptConfig(optimizer="sgd", unfreeze_every=1)),
    "der": der.Config(lr=5e-3, batch_size=32, adapt=AdaptConfig(schedule="linear")),
    "joint": joint.Config(lr=5e-3, batch_size=32),
    "lora": finetune.Config(lr=5e-3, batch_size=32,
                            adapt=AdaptConfig(lora=LoraConfig(r=2, train_also=["net.6.*"]))),
}
BUILD = {"finetune": finetune, "replay": replay, "replay-ema": replay, "ewc": ewc, "lwf": lwf,
         "der": der, "joint": joint, "lora": finetune}


def _train(strategy: Strategy, model: torch.nn.Module, task: Task, buffer: Any, val: Task | None,
           checkpoint: Path | None, stop_after: int | None) -> TrainResult:
    calls = 0

    def should_stop() -> bool:
        nonlocal calls
        calls += 1
        return stop_after is not None and calls > stop_after

    return strategy.train(TrainRequest(model, *task, buffer=buffer, budget=Budget(epochs=3),
                                       seed=11, val=val, should_stop=should_stop, device="cpu",
                                       checkpoint=checkpoint))


def _digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def run(name: str, task_a: Task, task_b: Task, checkpoint: Path | None = None,
        stop_after: int | None = None) -> dict[str, Any]:
    """Train case ``name`` from the same start (a model fitted to task A, a buffer of it);
    ``stop_after`` steps interrupts it."""
    model = build_model(MLPConfig(hidden=[16, 16], dropout=0.2), 2, 2, seed=3)
    fit_normalization(model, torch.cat([task_a[0], task_b[0]]))
    buffer = build_buffer(BufferConfig(capacity=64), seed=5)
    buffer.add(*task_a)
    val = None if name == "replay-ema" else (task_a[0][::5], task_a[1][::5])
    strategy = BUILD[name].build(CASES[name])
    r = _train(strategy, model, task_b, buffer, val, checkpoint, stop_after)
    return {
        "weights": _digest(model),
        "steps": r.steps,
        "samples": r.samples_processed,
        "loss": [p.loss.hex() for p in r.history],
        "val": [p.val_accuracy for p in r.history],
        "resumed_from_epoch": r.extra["resumed_from_epoch"],
    }


AMD_EPYC: dict[str, dict[str, Any]] = {
    "der": {
        "weights": "55aa85bdc468f023", "steps": 75, "samples": 2400,
        "loss": ["0x1.36ed1ae147ae1p-1", "0x1.df535c28f5c29p-2", "0x1.a6ee400000000p-2"],
        "val": [1.0, 1.0, 1.0], "resumed_from_epoch": 0,
    },
    "ewc": {
        "weights": "abb6dfb8491efb99", "steps": 51, "samples": 1599,
        "loss": ["0x1.532e34b4b4b4bp-1", "0x1.3be75c3c3c3c4p-1", "0x1.176414b4b4b4bp-1"],
        "val": [1.0, 1.0, 1.0], "resumed_from_epoch": 0,
    },
    "finetune": {
        "weights": "d2970eb6d0006a13", "steps": 39, "samples": 1200,
        "loss": ["0x1.49a0db13b13b1p-1", "0x1.02f6676276276p-1", "0x1.a830db13b13b1p-2"],
        "val": [0.05000000074505806, 0.012500000186264515, 0.012500000186264515],
        "resumed_from_epoch": 0,
    },
    "joint": {
        "weights": "68f9af586cbf15a5", "steps": 45, "samples": 1392,
        "loss": ["0x1.3078d55555555p-1", "0x1.7efa355555555p-2", "0x1.6ff899999999ap-3"],
        "val": [0.5, 0.44999998807907104, 0.875], "resumed_from_epoch": 0,
    },
    "lora": {
        "weights": "250c12bf52b74161", "steps": 39, "samples": 1200,
        "loss": ["0x1.43b864ec4ec4fp-1", "0x1.8842913b13b14p-2", "0x1.7bca93b13b13bp-4"],
        "val": [0.5, 0.44999998807907104, 0.375], "resumed_from_epoch": 0,
    },
    "lwf": {
        "weights": "76a60a868b890709", "steps": 51, "samples": 1599,
        "loss": ["0x1.5e22b69696969p-1", "0x1.59ddc3c3c3c3cp-1", "0x1.4e798b4b4b4b5p-1"],
        "val": [0.75, 0.5, 0.875], "resumed_from_epoch": 0,
    },
    "replay": {
        "weights": "3ecae3960e76be5f", "steps": 75, "samples": 2400,
        "loss": ["0x1.23c1333333333p-1", "0x1.dc397d70a3d71p-3", "0x1.3cad91eb851ecp-4"],
        "val": [1.0, 1.0, 1.0], "resumed_from_epoch": 0,
    },
    "replay-ema": {
        "weights": "8d15b969ac1acb6a", "steps": 42, "samples": 1281,
        "loss": ["0x1.471f049249249p-1", "0x1.f0b27b6db6db7p-2", "0x1.1a8e912492492p-2"],
        "val": [0.9624999761581421, 1.0, 1.0], "resumed_from_epoch": 0,
    },
}

INTEL_AVX512: dict[str, dict[str, Any]] = {
    "der": {
        "weights": "89c0073b0d9a4ef6", "steps": 75, "samples": 2400,
        "loss": ["0x1.36ed1ae147ae1p-1", "0x1.df535c28f5c29p-2", "0x1.a6ee400000000p-2"],
        "val": [1.0, 1.0, 1.0], "resumed_from_epoch": 0,
    },
    "ewc": {
        "weights": "d818ede258615e2b", "steps": 51, "samples": 1599,
        "loss": ["0x1.532e34b4b4b4bp-1", "0x1.3be75c3c3c3c4p-1", "0x1.176414b4b4b4bp-1"],
        "val": [1.0, 1.0, 1.0], "resumed_from_epoch": 0,
    },
    "finetune": {
        "weights": "42c8588d04c1ab68", "steps": 39, "samples": 1200,
        "loss": ["0x1.49a0db13b13b1p-1", "0x1.02f6676276276p-1", "0x1.a830dd89d89d9p-2"],
        "val": [0.05000000074505806, 0.012500000186264515, 0.012500000186264515],
        "resumed_from_epoch": 0,
    },
    "joint": {
        "weights": "74c152dde5007bf1", "steps": 45, "samples": 1392,
        "loss": ["0x1.3078d55555555p-1", "0x1.7efa355555555p-2", "0x1.6ff899999999ap-3"],
        "val": [0.5, 0.44999998807907104, 0.875], "resumed_from_epoch": 0,
    },
    "lora": {
        "weights": "12eec17a6541b6bb", "steps": 39, "samples": 1200,
        "loss": ["0x1.43b864ec4ec4fp-1", "0x1.8842913b13b14p-2", "0x1.7bca913b13b14p-4"],
        "val": [0.5, 0.44999998807907104, 0.375], "resumed_from_epoch": 0,
    },
    "lwf": {
        "weights": "ed2c4f33566dab9a", "steps": 51, "samples": 1599,
        "loss": ["0x1.5e22b69696969p-1", "0x1.59ddc3c3c3c3cp-1", "0x1.4e798b4b4b4b5p-1"],
        "val": [0.75, 0.5, 0.875], "resumed_from_epoch": 0,
    },
    "replay": {
        "weights": "68be303ca256bc02", "steps": 75, "samples": 2400,
        "loss": ["0x1.23c1333333333p-1", "0x1.dc397ae147ae1p-3", "0x1.3cad91eb851ecp-4"],
        "val": [1.0, 1.0, 1.0], "resumed_from_epoch": 0,
    },
    "replay-ema": {
        "weights": "d4c137a061adf411", "steps": 42, "samples": 1281,
        "loss": ["0x1.471f049249249p-1", "0x1.f0b276db6db6ep-2", "0x1.1a8e912492492p-2"],
        "val": [0.9624999761581421, 1.0, 1.0], "resumed_from_epoch": 0,
    },
}
"""The same runs on an Intel Xeon where ATen picks its AVX-512 kernels (recorded
2026-12-03): the float operations differ from the AMD machine's in the last bits."""
RECORDED_BY_CPU = {"AuthenticAMD": AMD_EPYC, "GenuineIntel AVX512": INTEL_AVX512}


def cpu() -> str:
    """The CPU's vendor and the kernel set ATen chose for it, e.g. ``GenuineIntel AVX512``."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    vendor = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("vendor_id")),
                  platform.processor() or "unknown")
    return f"{vendor} {torch.backends.cpu.get_cpu_capability()}"


RECORDED = RECORDED_BY_CPU.get(cpu()) or RECORDED_BY_CPU.get(cpu().split()[0])
"""This CPU's record (by vendor and kernels, else by vendor), or None: never recorded here."""


@pytest.mark.skipif(torch.__version__ != TORCH, reason=f"values recorded with torch {TORCH}")
@pytest.mark.skipif(RECORDED is None, reason=f"no values recorded on a {cpu()} CPU: re-record")
@pytest.mark.parametrize("name", sorted(CASES))
def test_training_is_bit_identical_to_the_recorded_run(name: str, task_a: Task,
                                                       task_b: Task) -> None:
    assert RECORDED is not None
    assert run(name, task_a, task_b) == RECORDED[name]


OLD_CHECKPOINT = Path(__file__).parent / "data" / "checkpoint_v1"
"""Case ``replay-ema`` interrupted in its third epoch: the epoch-2 checkpoint as the loop
wrote it when the values above were recorded (the format later versions must read)."""


@pytest.mark.skipif(torch.__version__ != TORCH, reason=f"values recorded with torch {TORCH}")
def test_a_checkpoint_written_before_resumes_to_the_recorded_run(
    task_a: Task, task_b: Task, tmp_path: Path
) -> None:
    shutil.copytree(OLD_CHECKPOINT, tmp_path / "ckpt")
    # written on the AMD machine; its third epoch ends there on the Intel one as well
    assert run("replay-ema", task_a, task_b, tmp_path / "ckpt") == {
        **AMD_EPYC["replay-ema"], "resumed_from_epoch": 2}


if __name__ == "__main__":  # re-record: prints RECORDED, writes OLD_CHECKPOINT
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.strategies.conftest import blobs

    torch.set_num_threads(1)
    a = blobs([(-4.0, -2.0), (-4.0, 2.0)], [0, 1], 200, seed=1)
    b = blobs([(4.0, -2.0), (4.0, 2.0)], [1, 0], 200, seed=2)
    print(f"# {cpu()}")
    print("RECORDED: dict[str, dict[str, Any]] = {")
    for n in sorted(CASES):
        print(f"    {n!r}: {run(n, a, b)!r},")
    print("}")
    shutil.rmtree(OLD_CHECKPOINT, ignore_errors=True)
    cut = run("replay-ema", a, b, OLD_CHECKPOINT, stop_after=30)
    assert cut["resumed_from_epoch"] == 0 and len(cut["loss"]) == 3, cut
