from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models: one thread is faster and leaves cores to the other test runs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def blobs(
    centers: list[tuple[float, float]], labels: list[int], n: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` rows around each centre (sd 0.7), labelled by ``labels``."""
    g = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for c, label in zip(centers, labels, strict=True):
        xs.append(torch.tensor(c) + 0.7 * torch.randn(n, 2, generator=g))
        ys.append(torch.full((n,), label, dtype=torch.int64))
    return torch.cat(xs), torch.cat(ys)


@pytest.fixture
def task_a() -> tuple[torch.Tensor, torch.Tensor]:
    """Left half of the plane: bottom is class 0, top is class 1."""
    return blobs([(-4.0, -2.0), (-4.0, 2.0)], [0, 1], 200, seed=1)


@pytest.fixture
def task_b() -> tuple[torch.Tensor, torch.Tensor]:
    """Right half, labelled the other way round: a model that learns only this one
    carries the boundary over to the left half and gets task A wrong."""
    return blobs([(4.0, -2.0), (4.0, 2.0)], [1, 0], 200, seed=2)
