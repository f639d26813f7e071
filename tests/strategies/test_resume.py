"""A run interrupted mid-epoch and resumed from its epoch checkpoint ends equal to an
uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from strategies import der, replay
from strategies.adaptation import AdaptConfig
from strategies.base import Budget, Strategy, TrainRequest
from strategies.models import MLPConfig, build_model
from strategies.registry import BufferConfig, build_buffer

Task = tuple[torch.Tensor, torch.Tensor]


def _run(
    strategy: Strategy, task_a: Task, task_b: Task, ckpt: Path | None, stop_at: int | None
) -> tuple[torch.nn.Module, object]:
    model = build_model(MLPConfig(hidden=[16, 16], dropout=0.2), 2, 2, seed=0)
    buffer = build_buffer(BufferConfig(capacity=60), seed=0)
    buffer.add(*task_a)
    calls = 0

    def should_stop() -> bool:
        nonlocal calls
        calls += 1
        return stop_at is not None and calls > stop_at

    val = (task_a[0][::4], task_a[1][::4])
    result = strategy.train(TrainRequest(model, *task_b, buffer=buffer, budget=Budget(epochs=5),
                                         seed=7, val=val, should_stop=should_stop, device="cpu",
                                         checkpoint=ckpt))
    return model, result


@pytest.mark.parametrize(
    "strategy",
    [
        replay.build(replay.Config(lr=5e-3, batch_size=32, patience=None,
                                   adapt=AdaptConfig(warmup_steps=5, schedule="cosine"))),
        der.build(der.Config(lr=5e-3, batch_size=32, patience=None,
                             adapt=AdaptConfig(optimizer="sgd", layer_decay=0.5))),
        replay.build(replay.Config(lr=5e-3, batch_size=32, patience=None,
                                   adapt=AdaptConfig(ema_decay=0.9))),
    ],
    ids=["replay", "der", "replay-ema"],
)
def test_resumed_run_equals_uninterrupted(
    strategy: Strategy, task_a: Task, task_b: Task, tmp_path: Path
) -> None:
    straight, full = _run(strategy, task_a, task_b, tmp_path / "a", stop_at=None)
    # 400 rows at 16 new rows per batch: 25 steps an epoch; stop in the middle of epoch 3
    _, cut = _run(strategy, task_a, task_b, tmp_path / "b", stop_at=60)
    assert cut.stopped_by == "interrupted" and cut.epochs == 2  # type: ignore[attr-defined]
    meta = json.loads((tmp_path / "b" / "checkpoint.json").read_text())
    assert meta["loop"]["epochs"] == 2
    resumed, res = _run(strategy, task_a, task_b, tmp_path / "b", stop_at=None)
    assert res.extra["resumed_from_epoch"] == 2  # type: ignore[attr-defined]
    a, b = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    for field in ("steps", "epochs", "samples_processed", "final_loss", "stopped_by"):
        assert getattr(full, field) == getattr(res, field), field
    assert [p.loss for p in full.history] == [p.loss for p in res.history]  # type: ignore[attr-defined]


def test_checkpoint_of_another_run_is_refused(task_a: Task, task_b: Task, tmp_path: Path) -> None:
    strategy = replay.build(replay.Config(batch_size=32))
    _run(strategy, task_a, task_b, tmp_path, stop_at=None)
    other = replay.build(replay.Config(batch_size=16))
    with pytest.raises(ValueError, match="belongs to another run"):
        _run(other, task_a, task_b, tmp_path, stop_at=None)


def test_checkpoint_without_averaging_is_not_resumed_with_it(
    task_a: Task, task_b: Task, tmp_path: Path
) -> None:
    _run(replay.build(replay.Config(batch_size=32)), task_a, task_b, tmp_path, stop_at=60)
    averaged = replay.build(replay.Config(batch_size=32, adapt=AdaptConfig(ema_decay=0.9)))
    with pytest.raises(ValueError, match="ema_decay differ"):
        _run(averaged, task_a, task_b, tmp_path, stop_at=None)


def test_torn_checkpoint_is_ignored(task_a: Task, task_b: Task, tmp_path: Path) -> None:
    strategy = replay.build(replay.Config(batch_size=32, patience=None))
    _run(strategy, task_a, task_b, tmp_path, stop_at=60)
    (tmp_path / "checkpoint.safetensors").write_bytes(b"torn")
    _, again = _run(strategy, task_a, task_b, tmp_path, stop_at=None)
    assert again.extra["resumed_from_epoch"] == 0  # type: ignore[attr-defined]
    assert not list(tmp_path.glob("*.tmp"))
