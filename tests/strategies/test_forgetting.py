"""Replay against plain fine-tuning on two interfering tasks, and reproducibility."""

from __future__ import annotations

import pytest
import torch

from strategies import finetune, replay
from strategies.base import Budget, Strategy, TrainRequest
from strategies.evaluation import accuracy
from strategies.models import MLPConfig, build_model, fit_normalization
from strategies.registry import BufferConfig, build_buffer

Task = tuple[torch.Tensor, torch.Tensor]


def _train_two_tasks(strategy: Strategy, task_a: Task, task_b: Task, seed: int) -> torch.nn.Module:
    model = build_model(MLPConfig(hidden=[32, 32]), n_features=2, n_classes=2, seed=seed)
    # normalisation from broad data, as a bootstrap would fit it: both regions in range
    fit_normalization(model, torch.cat([task_a[0], task_b[0]]))
    first = finetune.build(finetune.Config(lr=1e-2))
    first.train(TrainRequest(model, *task_a, budget=Budget(epochs=5), seed=seed, device="cpu"))
    assert accuracy(model, *task_a) > 0.95
    buffer = build_buffer(BufferConfig(capacity=100), seed=seed)
    buffer.add(*task_a)
    strategy.train(TrainRequest(model, *task_b, buffer=buffer, budget=Budget(epochs=5), seed=seed,
                                device="cpu"))
    return model


@pytest.mark.parametrize("seed", [0, 1])
def test_replay_forgets_less_than_finetune(task_a: Task, task_b: Task, seed: int) -> None:
    tuned = _train_two_tasks(finetune.build(finetune.Config(lr=1e-2)), task_a, task_b, seed)
    replayed = _train_two_tasks(replay.build(replay.Config(lr=1e-2)), task_a, task_b, seed)
    # both learn the new task
    assert accuracy(tuned, *task_b) > 0.95
    assert accuracy(replayed, *task_b) > 0.95
    # only replay keeps the old one
    assert accuracy(replayed, *task_a) > 0.95
    assert accuracy(tuned, *task_a) < 0.7


@pytest.mark.parametrize("kind", ["finetune", "replay"])
def test_same_seed_same_model(task_a: Task, task_b: Task, kind: str) -> None:
    def run(seed: int) -> dict[str, torch.Tensor]:
        strategy: Strategy = (
            finetune.build(finetune.Config())
            if kind == "finetune"
            else replay.build(replay.Config())
        )
        model = build_model(MLPConfig(hidden=[16], dropout=0.2), 2, 2, seed=0)
        buffer = build_buffer(BufferConfig(capacity=50), seed=0)
        buffer.add(*task_a)
        strategy.train(TrainRequest(model, *task_b, buffer=buffer, budget=Budget(epochs=2),
                                    seed=seed, device="cpu"))
        return model.state_dict()

    first, again, other = run(3), run(3), run(4)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_training_leaves_global_rng_alone(task_a: Task) -> None:
    model = build_model(MLPConfig(hidden=[8], dropout=0.5), 2, 2, seed=0)
    before = torch.random.get_rng_state()
    finetune.build(finetune.Config()).train(TrainRequest(model, *task_a, budget=Budget(epochs=1),
                                                         seed=0, device="cpu"))
    assert torch.equal(torch.random.get_rng_state(), before)
