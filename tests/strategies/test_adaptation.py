"""Adaptation controls: freezing, layerwise LR, gradual unfreezing, schedules, LoRA."""

from __future__ import annotations

import re

import pytest
import torch

from strategies import finetune
from strategies.adaptation import AdaptConfig, LoraConfig, plan
from strategies.base import Budget, TrainRequest
from strategies.models import MLPConfig, build_model

Task = tuple[torch.Tensor, torch.Tensor]


def _model() -> torch.nn.Module:
    return build_model(MLPConfig(hidden=[16, 16]), 2, 2, seed=0)  # layers net.0, net.2, net.4


def _train(model: torch.nn.Module, task: Task, adapt: AdaptConfig, epochs: int = 2) -> None:
    cfg = finetune.Config(lr=1e-2, batch_size=50, adapt=adapt)
    finetune.build(cfg).train(TrainRequest(model, *task, budget=Budget(epochs=epochs), seed=0,
                                           device="cpu"))


def _changed(before: dict[str, torch.Tensor], model: torch.nn.Module) -> set[str]:
    after = model.state_dict()
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_freeze_by_pattern_keeps_those_weights_and_restores_flags(task_a: Task) -> None:
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _train(model, task_a, AdaptConfig(freeze=["net.0.*", "net.2.bias"]))
    assert _changed(before, model) == {"net.2.weight", "net.4.weight", "net.4.bias"}
    assert all(p.requires_grad for p in model.parameters())


def test_layer_decay_gives_lower_layers_smaller_rates() -> None:
    run = plan(_model(), AdaptConfig(layer_decay=0.5), lr=0.1, weight_decay=0.0, seed=0)
    try:
        assert run.names == [["net.0.weight", "net.0.bias"], ["net.2.weight", "net.2.bias"],
                             ["net.4.weight", "net.4.bias"]]
        assert run.base_lrs() == pytest.approx([0.025, 0.05, 0.1])
        opt = run.optimizer(fused=False)
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.025, 0.05, 0.1])
    finally:
        run.finish()


def test_gradual_unfreezing_opens_the_top_layer_first(task_a: Task) -> None:
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _train(model, task_a, AdaptConfig(unfreeze_every=1), epochs=1)
    assert _changed(before, model) == {"net.4.weight", "net.4.bias"}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _train(model, task_a, AdaptConfig(unfreeze_every=1), epochs=3)
    assert len(_changed(before, model)) == 6  # all three layers by the third epoch


def test_warmup_and_cosine_schedule_reach_the_optimizer(task_a: Task) -> None:
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    from strategies.adaptation import lr_factor

    seen: list[float] = []
    handle = register_optimizer_step_pre_hook(
        lambda opt, args, kwargs: seen.append(opt.param_groups[0]["lr"])
    )
    try:
        _train(_model(), task_a, AdaptConfig(warmup_steps=3, schedule="cosine"), epochs=2)
    finally:
        handle.remove()
    expected = [
        1e-2 * lr_factor(s, warmup=3, schedule="cosine", total=16, min_ratio=0.0)
        for s in range(16)
    ]
    assert seen == pytest.approx(expected)
    assert seen[0] < seen[2] == pytest.approx(1e-2) and seen[-1] < 1e-3


def test_validation_fraction_enables_early_stopping(task_a: Task) -> None:
    cfg = finetune.Config(lr=1e-2, patience=1, adapt=AdaptConfig(validation_fraction=0.25))
    r = finetune.build(cfg).train(TrainRequest(_model(), *task_a, budget=Budget(epochs=50), seed=0,
                                               device="cpu"))
    assert r.stopped_by == "early_stopping"
    assert r.extra["new_samples"] < 50 * len(task_a[1])
    assert r.history[0].val_accuracy is not None


@pytest.mark.parametrize("validate", [False, True])
def test_ema_decay_ends_with_the_average_of_the_steps(task_a: Task, validate: bool) -> None:
    """The run ends with the moving average of its iterates (steps of the same seeded run
    replayed one budget at a time), also when validation keeps the best epoch's weights."""
    decay, n = 0.8, 8  # task_a: 400 rows at batch 50, one epoch
    iterates = []
    for steps in range(n + 1):
        model = _model()
        if steps:
            cfg = finetune.Config(lr=1e-2, batch_size=50)
            finetune.build(cfg).train(TrainRequest(model, *task_a, budget=Budget(steps=steps),
                                                   seed=0, device="cpu"))
        iterates.append(model.state_dict())
    expected = dict(iterates[0])
    for t, w in enumerate(iterates[1:]):
        d = min(decay, (1 + t) / (10 + t))
        expected = {k: d * expected[k] + (1 - d) * w[k] for k in w}
    model = _model()
    cfg = finetune.Config(lr=1e-2, batch_size=50, adapt=AdaptConfig(ema_decay=decay))
    val = (task_a[0][::4], task_a[1][::4]) if validate else None
    r = finetune.build(cfg).train(TrainRequest(model, *task_a, budget=Budget(steps=n), seed=0,
                                               val=val, device="cpu"))
    assert r.steps == n and (r.history[0].val_accuracy is not None) == validate
    got = model.state_dict()
    assert all(torch.allclose(got[k], expected[k], atol=1e-6) for k in got)
    assert not torch.allclose(got["net.4.weight"], iterates[-1]["net.4.weight"])


def test_lora_trains_low_rank_updates_and_merges_back(task_a: Task, task_b: Task) -> None:
    model = _model()
    keys = sorted(model.state_dict())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adapt = AdaptConfig(lora=LoraConfig(r=2, alpha=4), warmup_steps=2)
    _train(model, task_b, adapt, epochs=3)
    assert sorted(model.state_dict()) == keys  # same architecture after the merge
    changed = _changed(before, model)
    assert changed == {"net.0.weight", "net.2.weight"}  # head and biases untouched
    delta = model.state_dict()["net.2.weight"] - before["net.2.weight"]
    assert torch.linalg.matrix_rank(delta) <= 2
    assert all(p.requires_grad for p in model.parameters())


def test_lora_train_also_trains_the_head(task_b: Task) -> None:
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _train(model, task_b, AdaptConfig(lora=LoraConfig(r=2, train_also=["net.4.*"])))
    assert {"net.4.weight", "net.4.bias"} <= _changed(before, model)


def test_everything_frozen_is_one_clear_error(task_a: Task) -> None:
    model = _model()
    with pytest.raises(ValueError, match="every parameter is frozen"):
        _train(model, task_a, AdaptConfig(freeze=["*"]))
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize(
    ("adapt", "message"),
    [
        (AdaptConfig(freeze=["net.0.*", "nett.2.*"]), "adapt.freeze: 'nett.2.*' matches no"),
        (AdaptConfig(layers=["net.[02].*", "head.*"]), "adapt.layers: 'head.*' matches no"),
        (AdaptConfig(lora=LoraConfig(r=2, train_also=["head.*"])),
         "adapt.lora.train_also: 'head.*' matches no"),
        (AdaptConfig(freeze=["net.0.*"], layers=["net.2.*"]), "'net.4.weight' matches none"),
    ],
    ids=["freeze", "layers", "train_also", "layers_uncovered"],
)
def test_a_pattern_that_matches_nothing_is_an_error_and_leaves_the_model(
    task_a: Task, adapt: AdaptConfig, message: str
) -> None:
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=re.escape(message)):
        _train(model, task_a, adapt)
    assert sorted(model.state_dict()) == sorted(before)  # no LoRA left behind
    assert not _changed(before, model)
    assert all(p.requires_grad for p in model.parameters())
