"""``task: regression`` in the config: what it accepts, and what it refuses at load with a
one-line reason (things that assume classes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runtime.config import ConfigError, parse_config


def _cfg(tmp_path: Path, **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "state_dir": str(tmp_path / "state"),
        "task": "regression",
        "schema": {"features": ["a", "b"], "label": "y"},
        "source": {"kind": "directory", "path": str(tmp_path)},
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


def test_a_regression_config_loads_with_its_loss(tmp_path: Path) -> None:
    cfg = parse_config(_cfg(tmp_path, regression={"loss": "huber", "huber_delta": 2.0},
                            bootstrap={"max_mae": 1.5}))
    assert cfg.task == "regression" and cfg.schema.numeric_label
    assert cfg.regression.loss == "huber" and cfg.bootstrap.max_mae == 1.5
    again = parse_config(cfg.model_dump(mode="json", by_alias=True))  # the retrain child's copy
    assert again.schema.numeric_label and again.config_hash() == cfg.config_hash()
    classifier = parse_config({**_cfg(tmp_path), "task": "classification"})
    assert not classifier.schema.numeric_label


@pytest.mark.parametrize(("over", "says"), [
    ({"schema": {"classes": ["low", "high"]}}, "schema.classes is given"),
    ({"retrain": {"buffer": {"kind": "class_balanced"}}}, "class_balanced needs classes"),
    ({"retrain": {"strategy": {"kind": "lwf"}}}, "lwf distils"),
    ({"retrain": {"strategy": {"kind": "ewc"}}}, "ewc weighs parameters"),
    ({"retrain": {"strategy": {"kind": "replay", "loss": "balanced"}}}, "balanced reweighs"),
    ({"model": {"kind": "cnn", "shape": [1, 2]}}, "model.kind cnn is a classifier"),
    ({"bootstrap": {"min_accuracy": 0.5}}, "use max_mae"),
    ({"detectors": [{"kind": "adwin", "signal": "confidence"}]}, "watches confidence"),
    ({"gate": {"rules": [{"metric": "accuracy", "at_least": 0.5}]}}, "metric mae or rmse"),
    ({"task": "classification", "bootstrap": {"max_mae": 1.0}}, "max_mae needs regression"),
])
def test_what_cannot_work_is_refused_in_one_line(
    tmp_path: Path, over: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigError, match=says) as err:
        parse_config(_cfg(tmp_path, **over))
    assert "\n" not in str(err.value)


def test_der_finetune_and_joint_are_allowed(tmp_path: Path) -> None:
    for kind in ("der", "finetune", "joint", "replay"):
        assert parse_config(_cfg(tmp_path, retrain={"strategy": {"kind": kind}})).task
