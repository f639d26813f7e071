"""The training loop: budgets, early stopping, interruption, progress, mixing."""

from __future__ import annotations

import pytest
import torch

from strategies.base import Budget, OptimizerSpec, Progress, Recipe, TrainRequest
from strategies.loop import fit

ADAM = OptimizerSpec(lr=1e-2, weight_decay=0.0)


def _data(n: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return x, (x[:, 0] > 0).long()


def _model() -> torch.nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))


def test_epochs_budget_and_one_progress_per_epoch() -> None:
    reports: list[Progress] = []
    r = fit(TrainRequest(_model(), *_data(), budget=Budget(epochs=3), seed=0,
                         progress=reports.append, device="cpu"),
            Recipe(mix=0.0, batch_size=32, optimizer=ADAM))
    assert (r.epochs, r.steps, r.stopped_by) == (3, 3 * 7, "epochs")
    assert [p.epoch for p in reports] == [1, 2, 3]
    assert [p.step for p in reports] == [7, 14, 21]
    assert r.samples_processed == 600 and reports[-1].samples == 600
    assert r.history == tuple(reports)
    assert r.final_loss == reports[-1].loss < reports[0].loss


def test_steps_budget_stops_mid_epoch_and_reports_it() -> None:
    reports: list[Progress] = []
    r = fit(TrainRequest(_model(), *_data(), budget=Budget(epochs=None, steps=10), seed=0,
                         progress=reports.append, device="cpu"),
            Recipe(mix=0.0, batch_size=32, optimizer=ADAM))
    assert (r.steps, r.epochs, r.stopped_by) == (10, 1, "steps")
    assert [(p.epoch, p.step) for p in reports] == [(1, 7), (2, 10)]  # the partial epoch too


def test_seconds_budget_stops_the_loop() -> None:
    r = fit(TrainRequest(_model(), *_data(2000), budget=Budget(epochs=None, seconds=0.3), seed=0,
                         device="cpu"),
            Recipe(mix=0.0, batch_size=8, optimizer=ADAM))
    assert r.stopped_by == "seconds"
    assert 0.3 <= r.seconds < 5.0
    assert r.steps > 0


def test_early_stopping_on_validation_and_best_weights_restored() -> None:
    x, y = _data()
    g = torch.Generator().manual_seed(1)
    vx = torch.randn(100, 4, generator=g)
    vy = torch.randint(0, 2, (100,), generator=g)  # noise: validation accuracy can't improve
    model = _model()
    r = fit(TrainRequest(model, x, y, budget=Budget(epochs=100), seed=0, val=(vx, vy),
                         device="cpu"),
            Recipe(mix=0.0, batch_size=32, optimizer=ADAM, patience=2))
    assert r.stopped_by == "early_stopping"
    assert r.epochs < 100
    assert r.extra["best_epoch"] <= r.epochs - 2
    assert all(p.val_accuracy is not None for p in r.history)
    best = max(p.val_accuracy for p in r.history if p.val_accuracy is not None)
    assert r.extra["best_val_accuracy"] == best
    from strategies.evaluation import accuracy

    assert accuracy(model, vx, vy) == best


def test_should_stop_interrupts() -> None:
    calls = 0

    def stop_after_five() -> bool:
        nonlocal calls
        calls += 1
        return calls > 5

    r = fit(TrainRequest(_model(), *_data(), budget=Budget(epochs=50), seed=0,
                         should_stop=stop_after_five, device="cpu"),
            Recipe(mix=0.0, batch_size=32, optimizer=ADAM))
    assert (r.steps, r.stopped_by) == (5, "interrupted")


def test_should_stop_before_the_first_step_leaves_the_model_alone() -> None:
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = fit(TrainRequest(model, *_data(), budget=Budget(epochs=5), seed=0, should_stop=lambda: True,
                         device="cpu"),
            Recipe(mix=0.0, batch_size=32, optimizer=ADAM))
    assert (r.steps, r.samples_processed, r.stopped_by, r.history) == (0, 0, "interrupted", ())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_rehearsal_fraction_of_each_batch() -> None:
    x, y = _data(100)
    rx, ry = _data(30, seed=1)
    r = fit(TrainRequest(_model(), x, y, budget=Budget(epochs=1), seed=0, device="cpu"),
            Recipe(rehearsal=(rx, ry), mix=0.25, batch_size=40, optimizer=ADAM))
    # 30 new + 10 replayed per full batch; the last batch has 10 new rows and 3 replayed
    assert r.steps == 4
    assert r.extra["new_samples"] == 100
    assert r.extra["rehearsal_samples"] == 3 * 10 + 3


def test_empty_rehearsal_is_plain_training() -> None:
    x, y = _data()
    empty = (torch.empty(0, 4), torch.empty(0, dtype=torch.int64))
    a, b = _model(), _model()
    fit(TrainRequest(a, x, y, budget=Budget(epochs=1), seed=0, device="cpu"),
        Recipe(rehearsal=empty, mix=0.5, batch_size=32, optimizer=ADAM))
    fit(TrainRequest(b, x, y, budget=Budget(epochs=1), seed=0, device="cpu"),
        Recipe(mix=0.0, batch_size=32, optimizer=ADAM))
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_frozen_parameters_stay_frozen_and_mode_is_restored() -> None:
    model = _model()
    first = model[0]
    assert isinstance(first, torch.nn.Linear)
    first.weight.requires_grad_(False)
    frozen = first.weight.clone()
    model.eval()
    fit(TrainRequest(model, *_data(), budget=Budget(epochs=1), seed=0, device="cpu"),
        Recipe(mix=0.0, batch_size=32, optimizer=ADAM))
    assert torch.equal(first.weight, frozen)
    assert not model.training


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"budget": Budget(epochs=None)}, "no limit"),
        ({"budget": Budget(epochs=0)}, "epochs must be positive"),
        ({"mix": 1.0}, "mix"),
        ({"batch_size": 0}, "batch_size"),
        ({"rehearsal": (torch.zeros(3, 5), torch.zeros(3, dtype=torch.int64))}, "rehearsal"),
    ],
)
def test_bad_arguments_are_one_line_errors(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "mix": 0.5,
        "batch_size": 32,
        "optimizer": ADAM,
        "budget": Budget(epochs=1),
        "seed": 0,
        "device": "cpu",
    }
    args.update(kwargs)
    request = {k: args.pop(k) for k in ("budget", "seed", "device")}
    with pytest.raises(ValueError, match=message) as err:
        fit(TrainRequest(_model(), *_data(), **request),  # type: ignore[arg-type]
            Recipe(**args))  # type: ignore[arg-type]
    assert "\n" not in str(err.value)
