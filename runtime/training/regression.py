"""The regression task's settings, and what a ``task: regression`` config cannot have.

Pure pydantic (no numpy, no torch), so :mod:`runtime.config` composes them without
importing what trains. A regression model has one output in target units; what assumes
classes (class-balanced buffers, distillation of class probabilities, a Fisher of the
cross-entropy, accuracy rules) is refused at load with a one-line reason.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from strategies.models import MLPConfig


class RegressionConfig(BaseModel):
    """How a ``task: regression`` model trains (bootstrap and retrains alike)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    loss: Literal["mse", "huber"] = "mse"
    """``huber``: squared within ``huber_delta`` target SDs, linear beyond."""
    huber_delta: float = Field(default=1.0, gt=0)


_CLASS_STRATEGIES = {"lwf": "distils the old model's class probabilities",
                     "ewc": "weighs parameters by the cross-entropy's Fisher information"}


def regression_problem(cfg: Any) -> str | None:
    """Why the ``task: regression`` config ``cfg`` (a :class:`runtime.config.DriftloopConfig`,
    typed loosely: this module sits below it) cannot work, or None; one line each."""
    rules, strategy = cfg.gate.rules or (), cfg.retrain.strategy
    checks = [
        (strategy.kind in _CLASS_STRATEGIES,
         f"retrain.strategy {strategy.kind} {_CLASS_STRATEGIES.get(strategy.kind)}: it needs "
         "task: classification (use replay, der, finetune or joint)"),
        (getattr(strategy, "loss", "ce") == "balanced",
         "retrain.strategy.loss balanced reweighs classes: task: regression has none"),
        ("classes" in cfg.schema_.model_fields_set and cfg.schema_.classes != [0, 1],
         "schema.classes is given but task: regression has a numeric target: remove classes"),
        (cfg.retrain.buffer.kind == "class_balanced",
         "retrain.buffer.kind class_balanced needs classes: use reservoir with task: regression"),
        (not isinstance(cfg.model, MLPConfig) and getattr(cfg.model, "kind", None) is not None,
         f"model.kind {getattr(cfg.model, 'kind', '')} is a classifier: task: regression takes "
         "the mlp or a factory model with one output"),
        (bool(cfg.stages), "stages: are not supported with task: regression yet (use bootstrap:)"),
        (cfg.bootstrap.min_accuracy > 0, "bootstrap.min_accuracy is for classifiers: use max_mae"),
        (any(d.signal == "confidence" for d in cfg.detectors),
         "a detector watches confidence, which a regression model does not have"),
        (cfg.policy.triggers.accuracy_floor is not None,
         "policy.triggers.accuracy_floor needs accuracy: task: regression has none"),
        (any(r.metric not in ("mae", "rmse") for r in rules),
         "gate.rules with task: regression take metric mae or rmse"),
        (any(r.by == "class" for r in rules), "gate.rules by: class needs classes"),
        (cfg.retrain.distributed is not None and cfg.retrain.distributed.active,
         "retrain.distributed is not supported with task: regression yet"),
    ]
    return next((why for bad, why in checks if bad), None)
