"""Model builders: the built-in MLP and user factories named by an import path.

A model maps a float32 feature matrix ``[n, n_features]`` to logits ``[n, n_classes]``.
The built-in MLP standardises its inputs with the buffers ``mean`` and ``std``; being
buffers, they are saved and restored with the weights (``state_dict``), so a checkpoint
carries the normalisation it was trained with. :func:`fit_normalization` sets them
from data.

A regression model is built with ``n_classes=1`` and ``target=(mean, std)``: the MLP
then outputs ``z * std + mean`` of its head ``z``, so it trains on a standardised target
and predicts in target units (``target_mean``/``target_std`` are buffers, and the unit's
meta records them as JSON).

A custom model is the one place where an import path belongs: ``FactoryConfig(factory=
"package.module:function")`` calls ``function(n_features=..., n_classes=..., **kwargs)``.
"""

from __future__ import annotations

import importlib
import re
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from strategies.text import TextConfig, build_text

_FACTORY_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class MLPConfig(BaseModel):
    """A multilayer perceptron with ReLU activations and standardised inputs."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["mlp"] = "mlp"
    hidden: list[int] = Field(default_factory=lambda: [64, 64])
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)

    @field_validator("hidden")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(h <= 0 for h in v):
            raise ValueError("hidden layer sizes must be positive")
        return v


class FactoryConfig(BaseModel):
    """A user model: ``factory`` is ``"package.module:function"``."""

    model_config = ConfigDict(extra="forbid")

    factory: str
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("factory")
    @classmethod
    def _import_path(cls, v: str) -> str:
        if not _FACTORY_PATH.match(v):
            raise ValueError(f"factory must look like 'package.module:function', got {v!r}")
        return v


class CNNConfig(BaseModel):
    """A small convolutional network over rows that are flattened images or signals.

    ``shape`` is ``[channels, length]`` (1-D convolutions, e.g. MNIST-1D: ``[1, 40]``)
    or ``[channels, height, width]`` (2-D, e.g. 8×8 digits: ``[1, 8, 8]``); a row holds
    ``prod(shape)`` features.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["cnn"] = "cnn"
    shape: list[int] = Field(min_length=2, max_length=3)
    channels: list[int] = Field(default_factory=lambda: [16, 32])
    hidden: int = Field(default=64, gt=0)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)

    @field_validator("shape", "channels")
    @classmethod
    def _positive_sizes(cls, v: list[int]) -> list[int]:
        if any(s <= 0 for s in v):
            raise ValueError("sizes must be positive")
        return v


ModelConfig = MLPConfig | CNNConfig | TextConfig | FactoryConfig


class MLP(nn.Module):
    """Standardise, then ``Linear → ReLU (→ Dropout)`` per hidden layer, then a linear head.

    Parameters
    ----------
    n_features, n_classes
        Input width and number of classes (the width of the logits; 1 for regression).
    hidden
        Hidden layer sizes; empty gives a linear model.
    dropout
        Dropout probability after each hidden activation.
    target
        Regression: the target's ``(mean, std)``; the output is ``head * std + mean``.

    Examples
    --------
    >>> model = MLP(3, 2, hidden=[8], dropout=0.0)
    >>> model(torch.zeros(5, 3)).shape
    torch.Size([5, 2])
    >>> MLP(3, 1, hidden=[], dropout=0.0, target=(50.0, 10.0)).target_mean.item()
    50.0
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, n_features: int, n_classes: int, hidden: list[int], dropout: float,
                 target: tuple[float, float] | None = None) -> None:
        super().__init__()
        self.regression = target is not None
        if target is not None:  # buffers only for regression: classifiers' keys unchanged
            self.register_buffer("target_mean", torch.tensor(float(target[0])))
            self.register_buffer("target_std", torch.tensor(float(target[1])))
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net((x - self.mean) / self.std)
        if self.regression:
            return out * self.target_std + self.target_mean  # type: ignore[no-any-return]
        return out  # type: ignore[no-any-return]


class CNN(nn.Module):
    """Standardise (per input channel, see :func:`fit_normalization`), reshape, then
    ``Conv → ReLU → MaxPool`` per entry of ``channels``
    (kernel 3, padding 1, pooling 2 while the spatial size allows), then a hidden
    linear layer and the head.

    The convolutions live in ``features``, the classifier in ``head`` (names to freeze
    by pattern: ``features.*`` is the backbone).

    Examples
    --------
    >>> model = CNN(64, 10, shape=[1, 8, 8], channels=[4, 8], hidden=16, dropout=0.0)
    >>> model(torch.zeros(5, 64)).shape
    torch.Size([5, 10])
    >>> CNN(40, 10, shape=[1, 40], channels=[4], hidden=8, dropout=0.0)(torch.zeros(2, 40)).shape
    torch.Size([2, 10])
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self, n_features: int, n_classes: int, *, shape: list[int], channels: list[int],
        hidden: int, dropout: float,
    ) -> None:
        super().__init__()
        size = 1
        for s in shape:
            size *= s
        if size != n_features:
            raise ValueError(f"cnn shape {shape} holds {size} features, the rows have {n_features}")
        self.shape = list(shape)
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        two_d = len(shape) == 3
        conv = nn.Conv2d if two_d else nn.Conv1d
        pool = nn.MaxPool2d if two_d else nn.MaxPool1d
        spatial = list(shape[1:])
        layers: list[nn.Module] = []
        width = shape[0]
        for c in channels:
            layers += [conv(width, c, kernel_size=3, padding=1), nn.ReLU()]
            if min(spatial) >= 2:
                layers.append(pool(2))
                spatial = [s // 2 for s in spatial]
            width = c
        flat = width
        for s in spatial:
            flat *= s
        self.features = nn.Sequential(*layers, nn.Flatten())
        head: list[nn.Module] = [nn.Linear(flat, hidden), nn.ReLU()]
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(hidden, n_classes))
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # -1, not len(x): a traced export (TorchScript, ONNX) keeps the batch size free
        z = ((x - self.mean) / self.std).reshape(-1, *self.shape)
        return self.head(self.features(z))  # type: ignore[no-any-return]


def build_model(
    cfg: ModelConfig, n_features: int, n_classes: int, *, seed: int | None = None,
    target: tuple[float, float] | None = None,
) -> nn.Module:
    """Build the model that ``cfg`` describes.

    Parameters
    ----------
    cfg
        :class:`MLPConfig`, :class:`CNNConfig` or :class:`FactoryConfig`.
    n_features, n_classes
        Input width and number of classes.
    target
        Regression with the built-in MLP: the target's ``(mean, std)`` (see :class:`MLP`).
    seed
        Seed for the initial weights, drawn inside ``torch.random.fork_rng`` so the global
        RNG is left as it was. ``None`` draws from the caller's (global) RNG, for callers
        that seed it themselves.

    Raises
    ------
    ValueError
        One line, when the factory cannot be imported, fails, or returns no ``nn.Module``.

    Examples
    --------
    >>> build_model(MLPConfig(hidden=[4]), n_features=3, n_classes=2, seed=0)
    MLP(...)
    """
    if seed is None:
        return _build(cfg, n_features, n_classes, target)
    with torch.random.fork_rng(devices=[]):
        # the CPU generator only: torch.manual_seed would also reseed every CUDA device,
        # whose state fork_rng(devices=[]) does not restore
        torch.default_generator.manual_seed(seed)
        return _build(cfg, n_features, n_classes, target)


def _build(
    cfg: ModelConfig, n_features: int, n_classes: int, target: tuple[float, float] | None
) -> nn.Module:
    if isinstance(cfg, MLPConfig):
        return MLP(n_features, n_classes, cfg.hidden, cfg.dropout, target)
    if isinstance(cfg, CNNConfig):
        return CNN(n_features, n_classes, shape=cfg.shape, channels=cfg.channels,
                   hidden=cfg.hidden, dropout=cfg.dropout)
    if isinstance(cfg, TextConfig):
        return build_text(cfg, n_features, n_classes)
    fn = _resolve(cfg.factory)
    try:
        model = fn(n_features=n_features, n_classes=n_classes, **cfg.kwargs)
    except Exception as exc:
        raise ValueError(
            f"model factory {cfg.factory!r} failed: {type(exc).__name__}: {_first_line(exc)}"
        ) from exc
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"model factory {cfg.factory!r} returned {type(model).__name__}, "
            "expected a torch.nn.Module"
        )
    return model


def _resolve(path: str) -> Any:
    module_name, _, attr_path = path.partition(":")
    if not module_name or not attr_path:
        raise ValueError(f"model factory must look like 'package.module:function', got {path!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"model factory {path!r}: cannot import module {module_name!r}: {_first_line(exc)}"
        ) from exc
    for name in attr_path.split("."):
        if not hasattr(obj, name):
            raise ValueError(
                f"model factory {path!r}: {module_name!r} has no attribute {attr_path!r}"
            )
        obj = getattr(obj, name)
    if not callable(obj):
        raise ValueError(f"model factory {path!r} is not callable")
    return obj


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


@torch.no_grad()
def fit_normalization(model: nn.Module, x: torch.Tensor) -> None:
    """Set the model's ``mean``/``std`` buffers from the columns of ``x``.

    Per column for the MLP; per input channel (over every position) for the CNN, as
    images are standardised. A no-op for a model without such buffers. Constant columns
    (channels) get ``std = 1``, so they map to zero instead of dividing by zero.

    Examples
    --------
    >>> model = MLP(2, 2, hidden=[], dropout=0.0)
    >>> fit_normalization(model, torch.tensor([[0.0, 5.0], [2.0, 5.0]]))
    >>> model.mean.tolist(), model.std.tolist()
    ([1.0, 5.0], [1.0, 1.0])
    """
    buffers = dict(model.named_buffers(recurse=False))
    mean, std = buffers.get("mean"), buffers.get("std")
    if mean is None or std is None:
        return
    xf = x.detach().to(dtype=torch.float32)
    if xf.ndim != 2 or xf.shape[1] != mean.numel():
        raise ValueError(
            f"fit_normalization: expected x of shape [n, {mean.numel()}], got {list(x.shape)}"
        )
    if len(xf) == 0:
        return
    if isinstance(model, CNN):
        # one mean and sd per input channel, over rows and positions: a pixel that is
        # nearly constant in the fitted rows must not be scaled up a hundredfold when
        # later data (a new class, a drifted distribution) uses it
        per_channel = xf.reshape(len(xf), model.shape[0], -1)
        m = per_channel.mean(dim=(0, 2)).repeat_interleave(per_channel.shape[2])
        s = per_channel.std(dim=(0, 2), unbiased=False).repeat_interleave(per_channel.shape[2])
    else:
        m = xf.mean(dim=0)
        s = xf.std(dim=0, unbiased=False) if len(xf) > 1 else torch.zeros_like(m)
    s = torch.where(s > 1e-8, s, torch.ones_like(s))
    mean.copy_(m.reshape(mean.shape))
    std.copy_(s.reshape(std.shape))
