"""Adaptation controls: which parameters train, at which learning rate, on what schedule.

Every strategy's config carries an :class:`AdaptConfig` under ``adapt:``. The training
loop turns it into a :class:`Plan` for one run:

- the optimizer (Adam, AdamW or SGD with momentum) and its weight decay;
- ``freeze``: parameters whose names match a pattern (``fnmatch``) do not train (a
  pattern here, in ``layers`` or in ``lora.train_also`` that matches no parameter is an
  error: a typo must not silently train what was meant to be frozen);
- layers: the trainable parameters split into groups, bottom to top. By default a layer
  is the name up to its first numeric component (``net.0``, ``encoder.layer.3``), else
  the module that owns the parameter; ``layers`` lists patterns instead;
- ``layer_decay``: the top layer trains at ``lr``, each layer below at ``layer_decay``
  times the one above it (layerwise learning-rate decay);
- ``unfreeze_every``: gradual unfreezing, top layer first, one more layer every that
  many epochs;
- a learning-rate schedule: linear warm-up over ``warmup_steps``, then constant, linear
  or cosine decay to ``min_lr_ratio * lr`` at the end of the budget's epochs or steps
  (the config refuses a decaying schedule on a budget of seconds alone);
- ``validation_fraction``: early stopping on a held-out split of the new rows;
- ``ema_decay``: end with an exponential moving average of the weights the run went
  through (Polyak averaging), not the last step's;
- ``lora``: low-rank adaptation through peft (:mod:`strategies.peft_adapter`), merged
  into the weights when the run ends, so the model keeps its architecture.

Frozen flags are restored when the run ends, whatever happened.
"""

from __future__ import annotations

import copy
import fnmatch
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn


class LoraConfig(BaseModel):
    """Low-rank adaptation (Hu et al., 2021, arXiv:2106.09685) through peft."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(default=8, gt=0)
    alpha: int = Field(default=16, gt=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    target_modules: list[str] | None = None
    """Module names to adapt (peft's matching: exact name or name suffix). ``None``:
    every ``Linear``/``Conv1d``/``Conv2d`` except the last module (the head)."""
    train_also: list[str] = Field(default_factory=list)
    """Parameter-name patterns trained in full next to the adapters (e.g. the head)."""


class AdaptConfig(BaseModel):
    """Optimizer, freezing, layerwise learning rates, schedule and LoRA for one run.

    Examples
    --------
    >>> AdaptConfig(freeze=["net.0.*"], layer_decay=0.5, warmup_steps=10).schedule
    'constant'
    """

    model_config = ConfigDict(extra="forbid")

    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    momentum: float = Field(default=0.9, ge=0, lt=1)
    """SGD only."""
    freeze: list[str] = Field(default_factory=list)
    layers: list[str] | None = None
    layer_decay: float | None = Field(default=None, gt=0, le=1)
    unfreeze_every: int | None = Field(default=None, gt=0)
    warmup_steps: int = Field(default=0, ge=0)
    schedule: Literal["constant", "linear", "cosine"] = "constant"
    min_lr_ratio: float = Field(default=0.0, ge=0, le=1)
    max_grad_norm: float | None = Field(default=None, gt=0)
    validation_fraction: float | None = Field(default=None, gt=0, lt=1)
    """When the caller gives no validation data: hold out this fraction of the new rows
    (seeded) for early stopping and best-epoch weights."""
    ema_decay: float | None = Field(default=None, gt=0, lt=1)
    """Keep an exponential moving average of the trained weights, updated after every
    step with ``min(ema_decay, (1 + t) / (10 + t))`` at step ``t`` (the warm-up keeps the
    starting weights from dominating a short run), and end with it: the run returns the
    averaged weights, and with validation each epoch's averaged weights are the ones
    evaluated and kept. Averaging the last few dozen steps smooths the noise of small
    batches; in continual fine-tuning it raises accuracy on old and new data at no
    extra compute (Soutif-Cormerais et al., "Improving Online Continual Learning
    Performance and Stability with Temporal Ensembles", CoLLAs 2023, arXiv:2306.16817).
    ``None``: the last step's weights (or the best epoch's)."""
    lora: LoraConfig | None = None

    @model_validator(mode="after")
    def _lora_and_freeze(self) -> AdaptConfig:
        if self.lora is not None and self.freeze:
            raise ValueError("lora already freezes the base weights; use lora.train_also")
        return self


_NUMERIC = re.compile(r"^\d+$")


def layer_of(name: str) -> str:
    """The default layer of a parameter name.

    Examples
    --------
    >>> layer_of("encoder.layer.3.attention.query.weight"), layer_of("head.bias")
    ('encoder.layer.3', 'head')
    """
    parts = name.split(".")
    for i, p in enumerate(parts[:-1]):
        if _NUMERIC.match(p):
            return ".".join(parts[: i + 1])
    return ".".join(parts[:-1]) or name


def layer_groups(names: list[str], patterns: list[str] | None) -> list[list[str]]:
    """Parameter names split into layers, bottom to top (the model's parameter order).

    With ``patterns``, layer ``i`` holds the names matching pattern ``i`` (first match
    wins); a name that matches none is an error.

    Examples
    --------
    >>> layer_groups(["net.0.weight", "net.0.bias", "net.2.weight"], None)
    [['net.0.weight', 'net.0.bias'], ['net.2.weight']]
    >>> layer_groups(["a.w", "b.w", "c.w"], ["a.*", "[bc].*"])
    [['a.w'], ['b.w', 'c.w']]
    """
    if patterns is None:
        groups: dict[str, list[str]] = {}
        for n in names:
            groups.setdefault(layer_of(n), []).append(n)
        return list(groups.values())
    out: list[list[str]] = [[] for _ in patterns]
    for n in names:
        for i, pat in enumerate(patterns):
            if fnmatch.fnmatchcase(n, pat):
                out[i].append(n)
                break
        else:
            raise ValueError(f"trainable parameter {n!r} matches none of adapt.layers")
    return [g for g in out if g]


def lr_factor(
    step: int, *, warmup: int, schedule: str, total: int | None, min_ratio: float
) -> float:
    """The learning-rate multiplier for ``step`` (0-based).

    Examples
    --------
    >>> [lr_factor(s, warmup=2, schedule="linear", total=6, min_ratio=0.0) for s in range(6)]
    [0.5, 1.0, 1.0, 0.75, 0.5, 0.25]
    """
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or total is None or total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / (total - warmup))
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    decay = 1.0 - progress if schedule == "linear" else cosine
    return min_ratio + (1.0 - min_ratio) * decay


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


@dataclass
class Plan:
    """One run's adaptation, applied to a model; :meth:`finish` undoes it."""

    model: nn.Module
    cfg: AdaptConfig
    lr: float
    weight_decay: float
    layers: list[list[nn.Parameter]]
    names: list[list[str]]
    _flags: list[tuple[nn.Parameter, bool]] = field(default_factory=list)
    _lora: Any = None

    @property
    def parameters(self) -> list[nn.Parameter]:
        return [p for layer in self.layers for p in layer]

    def base_lrs(self) -> list[float]:
        """The learning rate of each optimizer group: one per layer (top layer: ``lr``)
        with ``layer_decay``, else one group at ``lr``."""
        if self.cfg.layer_decay is None:
            return [self.lr]
        top = len(self.layers) - 1
        return [self.lr * self.cfg.layer_decay ** (top - i) for i in range(len(self.layers))]

    def optimizer(self, fused: bool) -> torch.optim.Optimizer:
        """One parameter group per layer with ``layer_decay`` (else one group: fewer
        optimizer launches per step)."""
        layers = self.layers if self.cfg.layer_decay is not None else [self.parameters]
        groups: list[dict[str, Any]] = [
            {"params": layer, "lr": lr}
            for layer, lr in zip(layers, self.base_lrs(), strict=True)
        ]
        c = self.cfg
        if c.optimizer == "sgd":
            return torch.optim.SGD(
                groups, lr=self.lr, momentum=c.momentum, weight_decay=self.weight_decay
            )
        cls = torch.optim.AdamW if c.optimizer == "adamw" else torch.optim.Adam
        return cls(groups, lr=self.lr, weight_decay=self.weight_decay, fused=fused)

    def start_epoch(self, epoch: int) -> None:
        """Gradual unfreezing: before epoch ``epoch`` (0-based) only the top layers train."""
        every = self.cfg.unfreeze_every
        if every is None:
            return
        n_open = min(len(self.layers), 1 + epoch // every)
        first_open = len(self.layers) - n_open
        for i, layer in enumerate(self.layers):
            for p in layer:
                p.requires_grad_(i >= first_open)

    def finish(self) -> None:
        """Merge LoRA into the weights (in place) and restore the frozen flags."""
        if self._lora is not None:
            from strategies import peft_adapter

            peft_adapter.merge(self._lora)
            self._lora = None
        for p, flag in self._flags:
            p.requires_grad_(flag)


def _unmatched(cfg: AdaptConfig, names: list[str]) -> str | None:
    """A pattern of ``cfg`` that matches none of the parameter ``names`` (a typo would
    otherwise train what was meant to be frozen, or leave untrained what was meant to
    train), described in one line; ``None`` when every pattern matches."""
    keys = [("adapt.freeze", cfg.freeze), ("adapt.layers", cfg.layers or [])]
    if cfg.lora is not None:
        keys.append(("adapt.lora.train_also", cfg.lora.train_also))
    for key, patterns in keys:
        for pat in patterns:
            if not any(fnmatch.fnmatchcase(n, pat) for n in names):
                shown = ", ".join(list(names)[:3]) + (", ..." if len(names) > 3 else "")
                return f"{key}: {pat!r} matches no parameter of the model ({shown})"
    return None


def plan(
    model: nn.Module, cfg: AdaptConfig | None, *, lr: float, weight_decay: float, seed: int
) -> Plan:
    """Apply ``cfg`` to ``model`` (LoRA injection, freezing) and group its parameters.

    Call :meth:`Plan.finish` when the run ends (the loop does, in ``finally``).
    """
    cfg = cfg or AdaptConfig()
    flags = [(p, p.requires_grad) for p in model.parameters()]
    handle = None
    if cfg.lora is not None:
        from strategies import peft_adapter

        handle = peft_adapter.inject(model, cfg.lora, seed)
        for name, p in model.named_parameters():
            if _matches(name, cfg.lora.train_also):
                p.requires_grad_(True)
    for name, p in model.named_parameters():
        if _matches(name, cfg.freeze):
            p.requires_grad_(False)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    problem = _unmatched(cfg, [n for n, _ in model.named_parameters()])
    if problem is None and not named:
        problem = "nothing to train: every parameter is frozen"
    names: list[list[str]] = []
    if problem is None:
        try:
            names = layer_groups([n for n, _ in named], cfg.layers)
        except ValueError as err:
            problem = str(err)
    if problem is not None:
        if handle is not None:
            from strategies import peft_adapter

            peft_adapter.merge(handle)
        for p, flag in flags:
            p.requires_grad_(flag)
        raise ValueError(problem)
    by_name = dict(named)
    layers = [[by_name[n] for n in g] for g in names]
    return Plan(model, cfg, lr, weight_decay, layers, names, _flags=flags, _lora=handle)


def check(model: nn.Module, cfg: AdaptConfig) -> None:
    """Raise the one-line ``ValueError`` :func:`plan` would raise for ``cfg`` on ``model``
    (a pattern that matches no parameter, LoRA targets the model lacks, nothing left to
    train); ``model`` itself is not touched (a copy is adapted).

    Examples
    --------
    >>> check(nn.Sequential(nn.Linear(2, 2)), AdaptConfig(freeze=["1.*"]))
    Traceback (most recent call last):
    ...
    ValueError: adapt.freeze: '1.*' matches no parameter of the model (0.weight, 0.bias)
    """
    plan(copy.deepcopy(model), cfg, lr=1.0, weight_decay=0.0, seed=0).finish()
