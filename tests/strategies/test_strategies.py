"""Every registered strategy on two interfering tasks; DER, LwF, EWC, joint specifics."""

from __future__ import annotations

import pytest
import torch

from strategies import der, ewc, finetune, joint, lwf, replay
from strategies.base import Budget, Strategy, TrainRequest
from strategies.evaluation import accuracy
from strategies.models import MLPConfig, build_model, fit_normalization
from strategies.registry import STRATEGIES, BufferConfig, build, build_buffer

Task = tuple[torch.Tensor, torch.Tensor]


def _first_task(task_a: Task, task_b: Task, seed: int) -> torch.nn.Module:
    model = build_model(MLPConfig(hidden=[32, 32]), n_features=2, n_classes=2, seed=seed)
    fit_normalization(model, torch.cat([task_a[0], task_b[0]]))
    finetune.build(finetune.Config(lr=1e-2)).train(TrainRequest(model, *task_a,
                                                                budget=Budget(epochs=5), seed=seed,
                                                                device="cpu"))
    return model


@pytest.mark.parametrize("kind", sorted(STRATEGIES))
def test_every_strategy_learns_the_new_task_reproducibly(
    kind: str, task_a: Task, task_b: Task
) -> None:
    def run() -> torch.nn.Module:
        model = _first_task(task_a, task_b, seed=0)
        buffer = build_buffer(BufferConfig(capacity=100), seed=0)
        buffer.add(*task_a)
        cfg = STRATEGIES[kind].Config(lr=1e-2)  # type: ignore[call-arg]
        result = build(cfg).train(TrainRequest(model, *task_b, buffer=buffer,
                                               budget=Budget(epochs=5), seed=0, device="cpu"))
        assert result.epochs == 5 and result.samples_processed > 0
        return model

    a, b = run(), run()
    if kind != "lwf":  # task B contradicts task A, and LwF without replay holds on to A
        assert accuracy(a, *task_b) > 0.95
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(
    "cfg",
    [
        der.Config(lr=1e-2),
        ewc.Config(lr=1e-2, strength=1e5),
        ewc.Config(lr=1e-2, mix=0.5),
        lwf.Config(lr=1e-2, mix=0.5, alpha=0.1),
        joint.Config(lr=1e-2),
    ],
    ids=["der", "ewc", "ewc+replay", "lwf+replay", "joint"],
)
def test_keeps_the_old_task_where_finetune_forgets(cfg: object, task_a: Task, task_b: Task) -> None:
    def after_b(strategy: Strategy) -> torch.nn.Module:
        model = _first_task(task_a, task_b, seed=1)
        buffer = build_buffer(BufferConfig(capacity=100), seed=1)
        buffer.add(*task_a)
        strategy.train(TrainRequest(model, *task_b, buffer=buffer, budget=Budget(epochs=5), seed=1,
                                    device="cpu"))
        return model

    tuned = after_b(finetune.build(finetune.Config(lr=1e-2)))
    kept = after_b(build(cfg))  # type: ignore[arg-type]
    assert accuracy(tuned, *task_a) < 0.7
    assert accuracy(kept, *task_a) > 0.9
    assert accuracy(kept, *task_b) > 0.9


def test_der_fills_missing_logits_from_the_starting_model(task_a: Task, task_b: Task) -> None:
    model = _first_task(task_a, task_b, seed=0)
    buffer = build_buffer(BufferConfig(capacity=50), seed=0)
    buffer.add(*task_a)
    assert buffer.logits() is None
    from strategies.evaluation import predict_logits

    expected = predict_logits(model, buffer.tensors()[0])
    assert der.fill_logits(model, buffer) == 50
    assert torch.equal(buffer.logits(), expected)  # type: ignore[arg-type]
    assert der.fill_logits(model, buffer) == 0  # nothing missing any more
    buffer.add(*task_b)  # new rows come without logits: NaN until the next fill
    z = buffer.logits()
    assert z is not None and bool(torch.isnan(z).any())


def test_lwf_teacher_is_frozen_copy(task_a: Task) -> None:
    model = build_model(MLPConfig(hidden=[8]), 2, 2, seed=0)
    pen = lwf.Distillation(model, alpha=1.0, temperature=2.0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert not any(p.requires_grad for p in pen.teacher.parameters())
    assert not torch.equal(pen.teacher(task_a[0]), model(task_a[0]))


def test_ewc_fisher_is_mean_squared_per_sample_gradient() -> None:
    model = torch.nn.Linear(3, 2)
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 1])
    fisher = ewc.fisher_diagonal(model, x, y, chunk=2)
    expected = torch.zeros_like(model.weight)
    for i in range(5):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        assert model.weight.grad is not None
        expected += model.weight.grad.pow(2) / 5
    assert torch.allclose(fisher["weight"], expected, atol=1e-6)


def test_joint_reinitializes_and_trains_on_buffer_and_new(task_a: Task, task_b: Task) -> None:
    model = _first_task(task_a, task_b, seed=0)
    buffer = build_buffer(BufferConfig(capacity=1000), seed=0)
    buffer.add(*task_a)
    r = joint.build(joint.Config(lr=1e-2, batch_size=50)).train(TrainRequest(model, *task_b,
                                                                             buffer=buffer,
                                                                             budget=Budget(epochs=2),
                                                                             seed=0, device="cpu"))
    assert r.samples_processed == 2 * (len(task_a[1]) + len(task_b[1]))
    assert accuracy(model, *task_a) > 0.95 and accuracy(model, *task_b) > 0.95


def test_balanced_log_prior_is_each_class_share_of_a_batch() -> None:
    from strategies.losses import balanced_log_prior as _log_prior

    y, ry = torch.tensor([2, 2, 3, 3]), torch.tensor([0, 1, 1, 1])
    share = _log_prior(y, ry, n_new=6, n_rep=2).exp()
    assert torch.allclose(share, torch.tensor([0.0625, 0.1875, 0.375, 0.375]))


@pytest.mark.parametrize("seed", [0, 3])
def test_balanced_replay_keeps_old_classes_when_new_classes_arrive(seed: int) -> None:
    """Class-incremental: two new classes beside two old ones, a 20-row buffer replayed
    as a fifth of each batch. Plain cross-entropy lets the new classes outvote the old;
    the balanced softmax keeps the old classes and still learns the new."""
    from tests.strategies.conftest import blobs

    old = blobs([(-4.0, -2.0), (-4.0, 2.0)], [0, 1], 200, seed=1)
    new = blobs([(-1.0, -2.0), (-1.0, 2.0)], [2, 3], 200, seed=2)

    def after_new(loss: str) -> torch.nn.Module:
        model = build_model(MLPConfig(hidden=[32, 32]), n_features=2, n_classes=4, seed=seed)
        fit_normalization(model, torch.cat([old[0], new[0]]))
        finetune.build(finetune.Config(lr=1e-2)).train(TrainRequest(model, *old,
                                                                    budget=Budget(epochs=5),
                                                                    seed=seed, device="cpu"))
        buffer = build_buffer(BufferConfig(kind="class_balanced", capacity=20), seed=seed)
        buffer.add(*old)
        cfg = replay.Config(lr=1e-2, mix=0.2, loss=loss)  # type: ignore[arg-type]
        replay.build(cfg).train(TrainRequest(model, *new, buffer=buffer, budget=Budget(epochs=5),
                                             seed=seed, device="cpu"))
        return model

    plain, balanced = after_new("ce"), after_new("balanced")
    assert accuracy(balanced, *old) > 0.97
    assert accuracy(balanced, *old) > accuracy(plain, *old) + 0.03
    assert accuracy(balanced, *new) > 0.9
