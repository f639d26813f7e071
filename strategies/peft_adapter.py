"""Low-rank adaptation through peft (the only peft import).

peft's ``LoraModel`` injects adapter layers into a model in place (any ``nn.Module``:
``Linear`` and ``Conv`` layers are supported); :func:`merge` folds them back into the
base weights and puts the original layers back, so the model leaves a LoRA run with its
own architecture and state-dict keys and the registry saves it like any other.

peft takes seconds to import (it imports transformers), so strategies import this
module only when a config asks for LoRA.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import LoraModel
from torch import nn


class LoraSettings(Protocol):
    """What :func:`inject` reads of ``adapt.lora`` (:class:`strategies.adaptation.LoraConfig`)."""

    @property
    def r(self) -> int: ...

    @property
    def alpha(self) -> int: ...

    @property
    def dropout(self) -> float: ...

    @property
    def target_modules(self) -> list[str] | None: ...

_ADAPTABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)


def default_targets(model: nn.Module) -> list[str]:
    """Every ``Linear``/``Conv1d``/``Conv2d`` module except the last one (the head).

    Examples
    --------
    >>> m = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> default_targets(m)
    ['0']
    """
    names = [n for n, m in model.named_modules() if isinstance(m, _ADAPTABLE)]
    return names[:-1]


def inject(model: nn.Module, cfg: LoraSettings, seed: int) -> Any:
    """Add LoRA adapters to ``model`` in place; only the adapters are left trainable.

    The adapters' initial weights are drawn from ``seed`` (the caller's RNG is left as
    it was). Returns the handle :func:`merge` takes.

    Examples
    --------
    >>> from strategies.adaptation import LoraConfig
    >>> m = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> h = inject(m, LoraConfig(r=2), seed=0)
    >>> sorted(n for n, p in m.named_parameters() if p.requires_grad)
    ['0.lora_A.default.weight', '0.lora_B.default.weight']
    >>> merge(h); sorted(m.state_dict())
    ['0.bias', '0.weight', '2.bias', '2.weight']
    """
    targets = cfg.target_modules if cfg.target_modules is not None else default_targets(model)
    if not targets:
        raise ValueError("lora: the model has no Linear or Conv layer to adapt")
    peft_cfg = PeftLoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(targets),
        bias="none",
    )
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        try:
            return LoraModel(model, peft_cfg, adapter_name="default")
        except ValueError as err:
            raise ValueError(f"lora: {str(err).splitlines()[0]}") from None


def merge(handle: Any) -> None:
    """Fold the adapters into the base weights and remove them (in place)."""
    handle.merge_and_unload()
