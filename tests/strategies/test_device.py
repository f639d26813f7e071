"""Where training runs: the ``retrain.device`` setting, CUDA under bf16, CPU reproducibility."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from pydantic import TypeAdapter

from runtime.config import ConfigError, DriftloopConfig, parse_config
from strategies.base import Budget, OptimizerSpec, Recipe, TrainRequest, TrainResult
from strategies.loop import fit, pick_device
from strategies.models import MLPConfig, build_model
from strategies.registry import BufferConfig, StrategyConfig, build, build_buffer
from tests.conftest import SMALL


def _config(tmp_path: Path, device: object) -> DriftloopConfig:
    data = copy.deepcopy(SMALL)
    data["state_dir"] = str(tmp_path)
    data["retrain"]["device"] = device
    return parse_config(data, origin="test")


@pytest.mark.parametrize(
    ("value", "device"), [("auto", None), ("cpu", "cpu"), ("cuda", "cuda"), ("cuda:1", "cuda:1")]
)
def test_retrain_device_setting(tmp_path: Path, value: str, device: str | None) -> None:
    assert _config(tmp_path, value).retrain.torch_device == device


def test_retrain_device_defaults_to_auto(tmp_path: Path) -> None:
    data = copy.deepcopy(SMALL)
    data["state_dir"] = str(tmp_path)
    assert parse_config(data, origin="test").retrain.device == "auto"


@pytest.mark.parametrize("value", ["gpu", "cuda:", "CPU", "cuda:x", 1])
def test_a_bad_retrain_device_is_a_one_line_error(tmp_path: Path, value: object) -> None:
    with pytest.raises(ConfigError) as err:
        _config(tmp_path, value)
    message = str(err.value)
    assert "retrain.device" in message and "\n" not in message


def test_cuda_asked_for_without_cuda_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="'cuda:0' asked for, but CUDA is not available"):
        pick_device("cuda:0")
    assert pick_device(None) == torch.device("cpu")


KINDS: list[dict[str, object]] = [
    {"kind": "finetune"},
    {"kind": "replay", "mix": 0.5},
    {"kind": "der", "mix": 0.5},
    {"kind": "lwf", "mix": 0.25},
    {"kind": "ewc", "mix": 0.25},
    {"kind": "joint"},
]


def _train(cfg: dict[str, object], seed: int, device: str | None) -> dict[str, torch.Tensor]:
    strategy = build(TypeAdapter(StrategyConfig).validate_python({**cfg, "lr": 1e-2}))
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(160, 3, generator=g), torch.randint(0, 3, (160,), generator=g)
    buffer = build_buffer(BufferConfig(capacity=40), seed=1)
    buffer.add(torch.randn(60, 3, generator=g), torch.randint(0, 3, (60,), generator=g))
    model = build_model(MLPConfig(hidden=[16], dropout=0.2), 3, 3, seed=0)
    strategy.train(TrainRequest(model, x, y, buffer=buffer, budget=Budget(epochs=2), seed=seed,
                                device=device, val=(x[:40], y[:40])))
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("cfg", KINDS, ids=[str(k["kind"]) for k in KINDS])
def test_every_strategy_is_seeded_and_reproducible_on_cpu(cfg: dict[str, object]) -> None:
    a, b, other = _train(cfg, 3, "cpu"), _train(cfg, 3, "cpu"), _train(cfg, 4, "cpu")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], other[k]) for k in a)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_trains_under_bf16_autocast_and_returns_the_model_home() -> None:
    model = build_model(MLPConfig(hidden=[32]), 4, 2, seed=0)
    dtypes: list[torch.dtype] = []
    model.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    x, y = torch.randn(256, 4), torch.randint(0, 2, (256,))

    def on_cuda(m: torch.nn.Module) -> TrainResult:
        return fit(TrainRequest(m, x, y, budget=Budget(epochs=2), seed=0, device="cuda"),
                   Recipe(mix=0.0, batch_size=64, optimizer=OptimizerSpec(1e-2, 0.0)))

    r = on_cuda(model)
    assert r.extra["device"].startswith("cuda") and r.epochs == 2
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in model.parameters())
    again = build_model(MLPConfig(hidden=[32]), 4, 2, seed=0)
    on_cuda(again)
    assert all(
        torch.allclose(p, q, atol=1e-6)
        for p, q in zip(model.parameters(), again.parameters(), strict=True)
    )
