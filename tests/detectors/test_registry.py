"""The detector registry and the config union agree."""

from __future__ import annotations

import typing

import pytest
from pydantic import TypeAdapter, ValidationError

from detectors import adwin, cusum
from detectors.base import Detector
from detectors.registry import DETECTORS, DetectorConfig, build, default_univariate


def union_members() -> list[type]:
    union = typing.get_args(DetectorConfig)[0]
    return list(typing.get_args(union))


def test_registry_and_config_union_agree() -> None:
    members = union_members()
    assert len(members) == len(DETECTORS)
    for kind, module in DETECTORS.items():
        assert module.__name__ == f"detectors.{kind}"  # type: ignore[attr-defined]
        assert module.Config.model_fields["kind"].default == kind
        assert module.Config in members


@pytest.mark.parametrize("kind", sorted(DETECTORS))
def test_config_union_parses_and_builds_every_kind(kind: str) -> None:
    cfg = TypeAdapter(DetectorConfig).validate_python({"kind": kind})
    assert isinstance(cfg, DETECTORS[kind].Config)
    det = build(cfg, ["x", "y"])
    assert isinstance(det, Detector) and det.name == kind
    assert det.check().status == "not_enough_data"
    with pytest.raises(ValidationError, match="misspelt"):
        TypeAdapter(DetectorConfig).validate_python({"kind": kind, "misspelt": 1})


def test_default_univariate() -> None:
    configs = default_univariate()
    assert configs == [cusum.Config(), adwin.Config()]
    assert all(build(c, []).signal == "error" for c in configs)
