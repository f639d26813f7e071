"""The continual benchmarks: their data, split into experiences, models and buffers.

Used by :mod:`continual` (bench/continual.py), which documents the protocol.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from strategies.loop import split_validation  # noqa: E402
from strategies.models import (  # noqa: E402
    CNNConfig,
    MLPConfig,
    ModelConfig,
)
from strategies.registry import (  # noqa: E402
    BufferConfig,
)

Split = tuple[torch.Tensor, torch.Tensor]
VAL_FRACTION = 0.15


@dataclass(frozen=True)
class Experience:
    distribution: str
    train: Split
    val: Split


@dataclass(frozen=True)
class Budgets:
    scratch_epochs: int
    scratch_patience: int
    warm_epochs: int
    warm_patience: int | None
    warm_batch_size: int = 64
    warm_lr_scale: float = 1.0


@dataclass(frozen=True)
class Benchmark:
    name: str
    experiences: list[Experience]
    tests: dict[str, Split]
    n_classes: int
    model: ModelConfig
    buffer: BufferConfig
    lr: float
    budgets: Budgets


BUDGETS = Budgets(
    scratch_epochs=60,
    scratch_patience=5,
    warm_epochs=5,
    warm_patience=None,
    warm_batch_size=16,
    warm_lr_scale=2.0,
)
"""``--protocol fixed``. From scratch (bootstrap, ``joint``), the same for every benchmark: to
convergence, patience 5 on the validation accuracy, up to 60 epochs, batch 64. A
warm-started retrain: a fixed budget of 5 epochs, no early stopping (the accuracy dip right
after a warm start on new classes would fire it), the best validation epoch kept, batch 16
and twice the benchmark's learning rate (more steps per row seen); MNIST-1D takes 6 epochs.
Every field is a setting of the daemon's retrain (``budget.epochs``, ``patience: null``,
``batch_size``, ``lr``)."""

SETTINGS = ROOT / "bench" / "results" / "continual_tuning.json"
"""The tuning record ``--protocol tuned`` (the default) reads; ``--tune`` writes it."""

MNIST1D_BUDGETS = replace(BUDGETS, warm_epochs=6)
"""MNIST-1D's warm retrains take a sixth epoch (chosen from single-seed exploratory runs:
5 epochs kept 2-3 points less)."""

EARLIER_BUDGETS = Budgets(scratch_epochs=60, scratch_patience=5, warm_epochs=20, warm_patience=5)
"""The previous protocol (``--protocol earlier``): patience 5 for every model, warm cap 20,
batch 64 and the benchmark's learning rate everywhere."""


def _t(x: np.ndarray, y: np.ndarray) -> Split:
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64)


def _experience(name: str, x: np.ndarray, y: np.ndarray, seed: int) -> Experience:
    train, val = split_validation(*_t(x, y), VAL_FRACTION, seed)
    return Experience(name, train, val)


def river_recurring(quick: bool, data_seed: int = 0) -> Benchmark:
    from runtime.intake.demo_stream import segment_rows
    from runtime.intake.settings import Segment

    concepts = {
        "A: f1, age 20-40": Segment(rows=1, function=1, where={"age": (20, 40)}),
        "B: f4, age 40-60": Segment(rows=1, function=4, where={"age": (40, 60)}),
        "C: f7, age 60-81": Segment(rows=1, function=7, where={"age": (60, 81)}),
    }
    rounds = 3 if quick else 4
    n_train, n_test = (1000, 1000) if quick else (2000, 2000)
    order = [name for _ in range(rounds) for name in concepts]
    exps = []
    for i, name in enumerate(order):
        rows = list(segment_rows(concepts[name], seed=1000 + i + 10_000 * data_seed, n=n_train))
        x, y = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
        exps.append(_experience(name, x, y, seed=i + 1000 * data_seed))
    tests = {}
    for j, (name, seg) in enumerate(concepts.items()):
        rows = list(segment_rows(seg, seed=99_000 + j + 10_000 * data_seed, n=n_test, clean=True))
        tests[name] = _t(np.array([r[0] for r in rows]), np.array([r[1] for r in rows]))
    return Benchmark(
        "river_recurring",
        exps,
        tests,
        2,
        MLPConfig(hidden=[64, 64]),
        BufferConfig(kind="experience_balanced", capacity=600),
        lr=3e-3,
        budgets=BUDGETS,
    )


def _rotate(images: np.ndarray, degrees: float) -> np.ndarray:
    from scipy.ndimage import rotate

    return np.stack([rotate(im, degrees, reshape=False, order=1, mode="constant") for im in images])


def digits_rotated(quick: bool, data_seed: int = 0) -> Benchmark:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    d = load_digits()
    images, y = d.images.astype(np.float64), d.target.astype(np.int64)
    angles = list(range(0, 120 if quick else 180, 15))
    perm = np.random.default_rng(data_seed).permutation(len(y))
    te, tr = perm[: len(y) // 4], perm[len(y) // 4 :]
    exps, tests = [], {}
    for i, angle in enumerate(angles):
        name = f"rotated {angle}°"
        rot = _rotate(images, angle).reshape(len(y), -1)
        exps.append(_experience(name, rot[tr], y[tr], seed=i + 1000 * data_seed))
        tests[name] = _t(rot[te], y[te])
    model = CNNConfig(shape=[1, 8, 8], channels=[16, 32], hidden=64)
    return Benchmark(
        "digits_rotated",
        exps,
        tests,
        10,
        model,
        BufferConfig(kind="experience_balanced", capacity=400),
        lr=2e-3,
        budgets=BUDGETS,
    )


def _class_order(data_seed: int) -> list[int]:
    """0..9 in order for the reported data (``data_seed`` 0), else a seeded permutation."""
    if data_seed == 0:
        return list(range(10))
    return [int(c) for c in np.random.default_rng(data_seed).permutation(10)]


def digits_class_incremental(quick: bool, data_seed: int = 0) -> Benchmark:
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = d.data.astype(np.float64), d.target.astype(np.int64)
    perm = np.random.default_rng(data_seed).permutation(len(y))
    te, tr = perm[: len(y) // 4], perm[len(y) // 4 :]
    exps, tests = [], {}
    order = _class_order(data_seed)
    for t in range(5):
        classes = (order[2 * t], order[2 * t + 1])
        name = f"classes {classes[0]},{classes[1]}"
        m, mt = np.isin(y[tr], classes), np.isin(y[te], classes)
        exps.append(_experience(name, x[tr][m], y[tr][m], seed=t + 1000 * data_seed))
        tests[name] = _t(x[te][mt], y[te][mt])
    model = CNNConfig(shape=[1, 8, 8], channels=[16, 32], hidden=64)
    return Benchmark(
        "digits_class_incremental",
        exps,
        tests,
        10,
        model,
        BufferConfig(kind="class_balanced", capacity=400),
        lr=2e-3,
        budgets=BUDGETS,
    )


def mnist1d_class_incremental(quick: bool, data_seed: int = 0) -> Benchmark:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = 8000  # quick mode runs fewer seeds on the same data
    args.seed = 42 + data_seed
    # the generator seeds numpy's global RNG; leave the caller's state as it was
    state = np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(state)
    x, y = data["x"], data["y"].astype(np.int64)
    xt, yt = data["x_test"], data["y_test"].astype(np.int64)
    exps, tests = [], {}
    order = _class_order(data_seed)
    for t in range(5):
        classes = (order[2 * t], order[2 * t + 1])
        name = f"classes {classes[0]},{classes[1]}"
        m, mt = np.isin(y, classes), np.isin(yt, classes)
        exps.append(_experience(name, x[m], y[m], seed=t + 1000 * data_seed))
        tests[name] = _t(xt[mt], yt[mt])
    model = CNNConfig(shape=[1, 40], channels=[32, 64], hidden=128)
    return Benchmark(
        "mnist1d_class_incremental",
        exps,
        tests,
        10,
        model,
        BufferConfig(kind="class_balanced", capacity=2000),
        lr=2e-3,
        budgets=MNIST1D_BUDGETS,
    )


BENCHMARKS: dict[str, Callable[[bool, int], Benchmark]] = {
    "river_recurring": river_recurring,
    "digits_class_incremental": digits_class_incremental,
    "mnist1d_class_incremental": mnist1d_class_incremental,
    "digits_rotated": digits_rotated,
}
DEFAULT = ["river_recurring", "digits_class_incremental", "mnist1d_class_incremental"]
