"""The registry and the config union agree; configs forbid unknown keys."""

from __future__ import annotations

import typing

import pydantic
import pytest

from strategies import registry
from strategies.base import RehearsalBuffer, Strategy
from strategies.registry import STRATEGIES, BufferConfig, StrategyConfig, build, build_buffer


def _union_members() -> list[type[pydantic.BaseModel]]:
    union = typing.get_args(StrategyConfig)[0]
    return list(typing.get_args(union))


def test_registry_and_config_union_agree() -> None:
    members = _union_members()
    kinds = {m.model_fields["kind"].default for m in members}
    assert kinds == set(STRATEGIES)
    for kind, module in STRATEGIES.items():
        assert getattr(module, "__name__", None) == f"strategies.{kind}"  # kind = module name
        assert module.Config in members
        assert module.Config.model_fields["kind"].default == kind


@pytest.mark.parametrize("kind", sorted(STRATEGIES))
def test_every_strategy_builds_from_its_kind(kind: str) -> None:
    adapter: pydantic.TypeAdapter[typing.Any] = pydantic.TypeAdapter(StrategyConfig)
    cfg = adapter.validate_python({"kind": kind, "lr": 0.01})
    strategy = build(cfg)
    assert isinstance(strategy, Strategy)
    assert type(strategy).__module__ == f"strategies.{kind}"
    with pytest.raises(pydantic.ValidationError, match="extra"):
        adapter.validate_python({"kind": kind, "learning_rate": 0.01})


def test_unknown_kind_is_rejected() -> None:
    adapter: pydantic.TypeAdapter[typing.Any] = pydantic.TypeAdapter(StrategyConfig)
    with pytest.raises(pydantic.ValidationError, match="kind"):
        adapter.validate_python({"kind": "icarl"})


def test_replay_mix_must_leave_room_for_new_rows() -> None:
    adapter: pydantic.TypeAdapter[typing.Any] = pydantic.TypeAdapter(StrategyConfig)
    with pytest.raises(pydantic.ValidationError):
        adapter.validate_python({"kind": "replay", "mix": 1.0})


@pytest.mark.parametrize("kind", typing.get_args(BufferConfig.model_fields["kind"].annotation))
def test_every_buffer_kind_builds(kind: typing.Any) -> None:
    buf = build_buffer(BufferConfig(kind=kind, capacity=7), seed=0)
    assert isinstance(buf, RehearsalBuffer)
    assert buf.capacity == 7
    assert buf.state_meta()["kind"] == kind


def test_restore_buffer_reads_kind_from_meta() -> None:
    buf = build_buffer(BufferConfig(kind="class_balanced", capacity=4), seed=3)
    with pytest.raises(ValueError, match="missing 'kind'"):
        registry.restore_buffer(buf.state_tensors(), {})
    again = registry.restore_buffer(buf.state_tensors(), buf.state_meta())
    assert again.state_meta() == buf.state_meta()
