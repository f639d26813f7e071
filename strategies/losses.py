"""The losses the training loop trains with, and the validation score it keeps the best
epoch by.

Classification: cross-entropy on the logits, or the balanced softmax (the logits shifted by
the log of each class's expected share of a batch). Regression: the model outputs ``[n, 1]``
values in target units (the built-in MLP standardises the target inside,
:class:`strategies.models.MLP`) against float targets, trained on the squared or Huber error.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from strategies.base import RegressionLoss
from strategies.evaluation import accuracy, predict_logits


def cross_entropy(
    logits: torch.Tensor, y: torch.Tensor, log_prior: torch.Tensor | None
) -> torch.Tensor:
    """Cross-entropy; with ``log_prior`` (log of each class's expected share of a batch)
    the balanced softmax: cross-entropy of ``logits + log_prior``.

    >>> logits, y = torch.zeros(2, 3), torch.tensor([0, 1])
    >>> prior = torch.log(torch.tensor([0.5, 0.5, 1e-12]))
    >>> round(cross_entropy(logits, y, None).item(), 4), round(
    ...     cross_entropy(logits, y, prior).item(), 4)
    (1.0986, 0.6931)
    """
    return F.cross_entropy(logits if log_prior is None else logits + log_prior, y)


def balanced_log_prior(
    y: torch.Tensor, ry: torch.Tensor | None, n_new: int, n_rep: int, n_classes: int = 0
) -> torch.Tensor:
    """log of each class's expected share of a batch of ``n_new`` rows drawn from ``y``
    and ``n_rep`` drawn from ``ry``, for at least ``n_classes`` classes (a class no batch
    holds gets the log of 1e-12: its logit gets no push in training)."""
    k = max(n_classes, int(y.max()) + 1, 0 if ry is None else int(ry.max()) + 1)
    share = torch.bincount(y, minlength=k).double() * n_new / len(y)
    if ry is not None and n_rep > 0:
        share += torch.bincount(ry, minlength=k).double() * n_rep / len(ry)
    return torch.log((share / (n_new + n_rep)).clamp_min(1e-12)).float()


def regression_loss(out: torch.Tensor, y: torch.Tensor, reg: RegressionLoss) -> torch.Tensor:
    """The regression loss of outputs ``[n, 1]`` (or ``[n]``) against targets ``[n]``,
    on errors in units of ``reg.scale``.

    >>> out, y = torch.tensor([[1.0], [4.0]]), torch.tensor([0.0, 0.0])
    >>> regression_loss(out, y, RegressionLoss("mse", scale=2.0)).item()
    2.125
    >>> regression_loss(out, y, RegressionLoss("huber", delta=1.0, scale=2.0)).item()
    0.8125
    """
    pred, target = out.reshape(len(y)) / reg.scale, y / reg.scale
    if reg.kind == "huber":
        return F.huber_loss(pred, target, delta=reg.delta)
    return F.mse_loss(pred, target)


def val_score(model: nn.Module, x: torch.Tensor, y: torch.Tensor, regression: bool) -> float:
    """Validation accuracy; for regression, minus the RMSE (higher is better both ways)."""
    if not regression:
        return accuracy(model, x, y)
    pred = predict_logits(model, x).reshape(len(y))
    return -float(torch.sqrt(torch.mean((pred - y.cpu().float()) ** 2)))
