"""Model builders and input normalisation."""

from __future__ import annotations

import pydantic
import pytest
import torch
from torch import nn

from strategies.models import FactoryConfig, MLPConfig, ModelConfig, build_model, fit_normalization


def linear_factory(n_features: int, n_classes: int, bias: bool = True) -> nn.Module:
    return nn.Linear(n_features, n_classes, bias=bias)


def exploding_factory(n_features: int, n_classes: int) -> nn.Module:
    raise RuntimeError("no GPU here\nsecond line")


def test_mlp_shape_and_seeded_init() -> None:
    cfg = MLPConfig(hidden=[8, 4], dropout=0.1)
    a = build_model(cfg, n_features=3, n_classes=5, seed=1)
    b = build_model(cfg, n_features=3, n_classes=5, seed=1)
    a.eval()
    assert a(torch.randn(7, 3)).shape == (7, 5)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert sum(isinstance(m, nn.Dropout) for m in a.modules()) == 2


def test_seeded_build_leaves_global_rng_alone() -> None:
    before = torch.random.get_rng_state()
    build_model(MLPConfig(), 3, 2, seed=0)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_normalization_travels_in_the_state_dict() -> None:
    model = build_model(MLPConfig(hidden=[4]), 2, 2, seed=0)
    x = torch.tensor([[1.0, 10.0], [3.0, 10.0], [5.0, 10.0]])
    fit_normalization(model, x)
    state = model.state_dict()
    assert torch.allclose(state["mean"], torch.tensor([3.0, 10.0]))
    assert torch.allclose(state["std"], torch.tensor([(8 / 3) ** 0.5, 1.0]))
    other = build_model(MLPConfig(hidden=[4]), 2, 2, seed=5)
    other.load_state_dict(state)
    assert torch.equal(other(x), model(x))


def test_fit_normalization_is_a_noop_without_buffers() -> None:
    model = nn.Linear(2, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit_normalization(model, torch.randn(10, 2))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_factory_builds_with_kwargs() -> None:
    cfg = FactoryConfig(factory=f"{__name__}:linear_factory", kwargs={"bias": False})
    model = build_model(cfg, n_features=3, n_classes=2)
    assert isinstance(model, nn.Linear) and model.bias is None


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("no_such_package.models:make", "cannot import module 'no_such_package.models'"),
        ("torch.nn:NoSuchModel", "has no attribute 'NoSuchModel'"),
        ("builtins:dict", "returned dict, expected a torch.nn.Module"),
        ("torch.nn:Linear", "failed: TypeError"),
        (f"{__name__}:exploding_factory", "failed: RuntimeError: no GPU here"),
    ],
)
def test_factory_errors_are_one_clear_line(factory: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        build_model(FactoryConfig(factory=factory), 3, 2)
    assert "\n" not in str(err.value)
    assert factory in str(err.value)


def test_factory_path_format_is_validated() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"package\.module:function"):
        FactoryConfig(factory="torch.nn.Linear")


def test_model_config_union_picks_by_shape() -> None:
    adapter: pydantic.TypeAdapter[ModelConfig] = pydantic.TypeAdapter(ModelConfig)
    assert isinstance(adapter.validate_python({}), MLPConfig)
    assert isinstance(adapter.validate_python({"hidden": [3]}), MLPConfig)
    assert isinstance(adapter.validate_python({"factory": "a.b:c"}), FactoryConfig)
    with pytest.raises(pydantic.ValidationError):
        adapter.validate_python({"hiden": [3]})


@pytest.mark.parametrize("shape", [[1, 8, 8], [2, 10], [1, 3, 5]])
def test_cnn_builds_from_config_and_normalises(shape: list[int]) -> None:
    from strategies.models import CNNConfig

    n = 1
    for s in shape:
        n *= s
    model = build_model(CNNConfig(shape=shape, channels=[4, 8], hidden=16), n, 3, seed=0)
    x = torch.randn(20, n) * 5 + 2
    fit_normalization(model, x)
    assert model(x).shape == (20, 3)
    per_channel = x.reshape(20, shape[0], -1)  # one mean and sd per input channel
    assert torch.allclose(
        model.mean.reshape(shape[0], -1),  # type: ignore[operator]
        per_channel.mean(dim=(0, 2))[:, None].expand(-1, per_channel.shape[2]),
    )
    assert torch.allclose(
        model.std.reshape(shape[0], -1),  # type: ignore[operator]
        per_channel.std(dim=(0, 2), unbiased=False)[:, None].expand(-1, per_channel.shape[2]),
    )
    again = build_model(CNNConfig(shape=shape, channels=[4, 8], hidden=16), n, 3, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters(),
                                                 strict=True))


def test_cnn_shape_must_match_the_rows() -> None:
    from strategies.models import CNNConfig

    with pytest.raises(ValueError, match="holds 64 features, the rows have 63"):
        build_model(CNNConfig(shape=[1, 8, 8]), 63, 10, seed=0)
    with pytest.raises(pydantic.ValidationError):
        CNNConfig(shape=[64])
