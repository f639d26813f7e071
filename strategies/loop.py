"""The training loop: explicit, seeded, budgeted, interruptible, resumable.

One loop for every strategy. An epoch is one pass over the new data in shuffled order;
with rehearsal, each batch is ``batch_size`` rows of which ``round(mix * batch_size)``
are drawn uniformly (with replacement) from the rehearsal set. Data are indexed as
tensors on the training device; there is no ``DataLoader``. The loss is cross-entropy
plus an optional :class:`~strategies.base.Penalty` (EWC, LwF, DER's logit replay).

Randomness: shuffling and rehearsal draws come from a ``torch.Generator`` seeded with
``seed``; layers that draw from torch's global RNG (dropout) run inside
``torch.random.fork_rng`` with a seed derived from ``seed``, so the same seed gives the
same model and the caller's RNG state is left as it was.

Resumption: with ``checkpoint``, the state at the end of every epoch (weights, optimizer,
RNG states, counters) is saved there (:mod:`strategies.checkpoint`); a later call with
the same arguments and the same starting model continues from it and ends where an
uninterrupted run would have.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from strategies import checkpoint as ckpt
from strategies.adaptation import AdaptConfig, lr_factor, plan
from strategies.base import Batch, Budget, Penalty, Progress, TrainRequest, TrainResult
from strategies.evaluation import accuracy


@dataclass(frozen=True)
class OptimizerSpec:
    """The optimizer's learning rate (of the top layer) and weight decay for one run."""

    lr: float
    weight_decay: float


def pick_device(device: str | None) -> torch.device:
    """``device`` if given, else ``cuda`` when available, else ``cpu``.

    Raises
    ------
    ValueError
        ``device`` names CUDA (or a CUDA device index) this machine does not have.

    Examples
    --------
    >>> pick_device("cpu")
    device(type='cpu')
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but CUDA is not available here")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r} asked for, but there are {torch.cuda.device_count()} "
                "CUDA device(s)"
            )
    return dev


def _home_device(model: nn.Module) -> torch.device:
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def _check(
    x: torch.Tensor,
    y: torch.Tensor,
    rehearsal: tuple[torch.Tensor, torch.Tensor] | None,
    mix: float,
    batch_size: int,
    budget: Budget,
) -> None:
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"expected x [n, ...] and y [n], got {list(x.shape)} and {list(y.shape)}")
    if len(y) == 0:
        raise ValueError("no training rows")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if not 0.0 <= mix < 1.0:
        raise ValueError(f"mix must be in [0, 1), got {mix}")
    if budget.epochs is None and budget.steps is None and budget.seconds is None:
        raise ValueError("the budget sets no limit (epochs, steps or seconds)")
    for name in ("epochs", "steps", "seconds"):
        v = getattr(budget, name)
        if v is not None and v <= 0:
            raise ValueError(f"budget {name} must be positive, got {v}")
    if rehearsal is not None:
        rx, ry = rehearsal
        if rx.shape[1:] != x.shape[1:] or ry.ndim != 1 or len(rx) != len(ry):
            raise ValueError(
                f"rehearsal rows {list(rx.shape)} / labels {list(ry.shape)} "
                f"do not match training rows {list(x.shape)}"
            )


def _seed_global_rngs(seed: int, device: torch.device) -> None:
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)


def split_validation(
    x: torch.Tensor, y: torch.Tensor, fraction: float, seed: int
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """``((x_train, y_train), (x_val, y_val))``: a seeded random ``fraction`` held out.

    Examples
    --------
    >>> (xt, yt), (xv, yv) = split_validation(torch.zeros(10, 2), torch.zeros(10), 0.2, 0)
    >>> len(xt), len(xv)
    (8, 2)
    """
    n = len(y)
    n_val = min(n - 1, max(1, round(n * fraction)))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed ^ 0x5EED))
    val, train = perm[:n_val].sort().values, perm[n_val:].sort().values
    return (x[train], y[train]), (x[val], y[val])


def _total_steps(budget: Budget, n_batches: int) -> int | None:
    limits = [budget.steps] if budget.steps is not None else []
    if budget.epochs is not None:
        limits.append(budget.epochs * n_batches)
    return min(limits) if limits else None


def _fingerprint(
    model: nn.Module,
    x: torch.Tensor,
    n_rep: int,
    batch_size: int,
    seed: int,
    budget: Budget,
    ema_decay: float | None,
) -> dict[str, Any]:
    fp = {
        "seed": seed,
        "rows": len(x),
        "row_shape": list(x.shape[1:]),
        "rehearsal_per_batch": n_rep,
        "batch_size": batch_size,
        "parameters": [n for n, p in model.named_parameters() if p.requires_grad],
        "budget": asdict(budget),
    }
    if ema_decay is not None:  # absent otherwise: checkpoints written before it still match
        fp["ema_decay"] = ema_decay
    return fp


def _loss(logits: torch.Tensor, y: torch.Tensor, log_prior: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy; with ``log_prior`` (log of each class's expected share of a batch)
    the balanced softmax: cross-entropy of ``logits + log_prior``.

    >>> logits, y = torch.zeros(2, 3), torch.tensor([0, 1])
    >>> round(_loss(logits, y, None).item(), 4), round(_loss(logits, y, torch.log(
    ...     torch.tensor([0.5, 0.5, 1e-12]))).item(), 4)
    (1.0986, 0.6931)
    """
    return F.cross_entropy(logits if log_prior is None else logits + log_prior, y)


def _log_prior(
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


@dataclass(frozen=True, eq=False)
class Recipe:
    """How a strategy trains on a :class:`~strategies.base.TrainRequest`: what it adds to
    the caller's request (batch composition, optimiser, loss).

    Parameters
    ----------
    batch_size
        Rows per step, new and rehearsal together.
    optimizer
        Learning rate and weight decay (the optimizer's kind is ``adapt.optimizer``).
    mix
        Fraction of each batch drawn from ``rehearsal``, in ``[0, 1)``.
    rehearsal
        Old data ``(x, y)`` to mix into each batch; ``None`` or empty for none.
    rehearsal_logits
        Stored logits ``[len(rehearsal), k]`` for the rehearsal rows (NaN rows where
        unknown); the penalty sees the replayed rows' logits as ``Batch.replay_logits``.
    penalty
        Added to the loss of every batch.
    criterion
        ``"ce"``: cross-entropy. ``"balanced"``: the balanced softmax (Ren et al.,
        "Balanced Meta-Softmax for Long-Tailed Visual Recognition", NeurIPS 2020): the
        logits are shifted by the log of each class's expected share of a batch (from the
        new rows' and the rehearsal rows' labels and ``mix``) before the cross-entropy, so
        the few old classes' rows replayed among many new-class rows are not outvoted:
        the trained model's plain logits estimate a class-balanced posterior.
    patience
        With validation: stop after this many epochs without a better validation
        accuracy (``stopped_by="early_stopping"``). ``None`` never stops early.
    adapt
        Freezing, layerwise learning rates, schedule, LoRA (:mod:`strategies.adaptation`).
    """

    batch_size: int
    optimizer: OptimizerSpec
    mix: float = 0.0
    rehearsal: tuple[torch.Tensor, torch.Tensor] | None = None
    rehearsal_logits: torch.Tensor | None = None
    penalty: Penalty | None = None
    criterion: Literal["ce", "balanced"] = "ce"
    patience: int | None = None
    adapt: AdaptConfig | None = None


def fit(request: TrainRequest, recipe: Recipe) -> TrainResult:
    """Train ``request.model`` in place as ``recipe`` says: cross-entropy on its logits
    (plus ``recipe.penalty``).

    Only parameters with ``requires_grad`` are trained (and of those, what ``adapt``
    leaves trainable). The model is moved to the training device and back to its own
    device at the end. The budget's first limit reached ends training (checked after
    every step). ``progress`` is called after every epoch and after a final partial
    epoch. With ``val``, the weights of the epoch with the best validation accuracy are
    restored at the end; without it, ``adapt.validation_fraction`` holds out that
    fraction of the request's rows. On CUDA the forward pass runs under bf16 autocast.
    With ``checkpoint``, an existing checkpoint of the same run is resumed from.
    ``request.buffer`` is not read: the strategy puts what it replays in the recipe.

    Returns
    -------
    TrainResult
        ``samples_processed`` counts new and rehearsal rows; ``epochs`` counts completed
        epochs; ``extra`` holds ``device``, ``new_samples``, ``rehearsal_samples``,
        ``samples_per_second``, ``resumed_from_epoch`` and, with validation,
        ``best_epoch``, ``best_val_accuracy`` and ``validation_samples`` (rows through
        the validation forward passes). Strategies add ``overhead_samples``: rows through
        their own extra passes (DER's logits, LwF's teacher, EWC's Fisher).

    Examples
    --------
    >>> model = torch.nn.Linear(2, 2)
    >>> x, y = torch.randn(64, 2), torch.randint(0, 2, (64,))
    >>> r = fit(TrainRequest(model, x, y, budget=Budget(epochs=2), seed=0, device="cpu"),
    ...         Recipe(batch_size=16, optimizer=OptimizerSpec(1e-2, 0.0)))
    >>> r.epochs, r.steps, r.stopped_by
    (2, 8, 'epochs')
    """
    model, x, y, budget, seed = request.model, request.x, request.y, request.budget, request.seed
    progress, val, should_stop = request.progress, request.val, request.should_stop
    rehearsal, rehearsal_logits, mix = recipe.rehearsal, recipe.rehearsal_logits, recipe.mix
    batch_size, patience, penalty = recipe.batch_size, recipe.patience, recipe.penalty
    adapt, optimizer, criterion = recipe.adapt, recipe.optimizer, recipe.criterion
    device, checkpoint = request.device, request.checkpoint
    _check(x, y, rehearsal, mix, batch_size, budget)
    if patience is not None and patience < 1:
        raise ValueError(f"patience must be positive, got {patience}")
    adapt = adapt or AdaptConfig()
    if val is None and adapt.validation_fraction is not None:
        (x, y), val = split_validation(x, y, adapt.validation_fraction, seed)
    start = time.perf_counter()
    dev = pick_device(device)
    home = _home_device(model)
    was_training = model.training
    gen = torch.Generator().manual_seed(seed)
    dropout_seed = int(torch.randint(0, 2**62, (1,), generator=gen))

    xd = x.to(dev, torch.float32)
    yd = y.to(dev, torch.int64)
    rx = ry = rz = None
    if rehearsal is not None and len(rehearsal[1]) > 0 and mix > 0:
        rx, ry = rehearsal[0].to(dev, torch.float32), rehearsal[1].to(dev, torch.int64)
        if rehearsal_logits is not None:
            if len(rehearsal_logits) != len(ry):
                raise ValueError("rehearsal_logits do not line up with the rehearsal rows")
            rz = rehearsal_logits.to(dev, torch.float32)
    n_rep = 0 if rx is None else min(round(batch_size * mix), batch_size - 1)
    n_new = batch_size - n_rep
    n = len(yd)
    n_batches = math.ceil(n / n_new)
    log_prior = None  # "balanced": set at the first step, when the logits' width is known
    total_steps = _total_steps(budget, n_batches)
    vd = None if val is None else (val[0].to(dev, torch.float32), val[1].to(dev, torch.int64))
    ckpt_dir = None if checkpoint is None else Path(checkpoint)

    model.to(dev)
    run = plan(model, adapt, lr=optimizer.lr, weight_decay=optimizer.weight_decay, seed=seed)
    step = samples = new_samples = epochs_done = 0
    stopped_by: str | None = None
    history: list[Progress] = []
    best_acc, best_epoch, best_state, bad_epochs = -math.inf, 0, None, 0
    weights_are_best = False
    final_loss = math.nan
    resumed_from = 0
    fork_devices: list[int] = []
    if dev.type == "cuda":
        fork_devices = [dev.index if dev.index is not None else torch.cuda.current_device()]
    try:
        opt = run.optimizer(fused=dev.type == "cuda")
        base_lrs = run.base_lrs()
        params = run.parameters
        fingerprint = _fingerprint(model, x, n_rep, batch_size, seed, budget, adapt.ema_decay)
        live = [p.detach() for p in params]
        ema = None if adapt.ema_decay is None else [t.clone() for t in live]
        saved = None if ckpt_dir is None else ckpt.load(ckpt_dir, fingerprint)
        use_bf16 = dev.type == "cuda"
        scheduled = adapt.warmup_steps > 0 or adapt.schedule != "constant"
        clip = adapt.max_grad_norm
        if penalty is not None:
            penalty.prepare(dev)
        with torch.random.fork_rng(devices=fork_devices):
            _seed_global_rngs(dropout_seed, dev)
            if saved is not None:
                model.load_state_dict(saved.model)
                opt.load_state_dict(saved.optimizer)
                gen.set_state(saved.rng["gen"])
                torch.set_rng_state(saved.rng["cpu"])
                if dev.type == "cuda" and "cuda" in saved.rng:
                    torch.cuda.set_rng_state(saved.rng["cuda"], dev)
                s = saved.loop
                epochs_done, step, samples = s["epochs"], s["step"], s["samples"]
                new_samples, final_loss, stopped_by = s["new_samples"], s["loss"], s["stopped_by"]
                best_epoch, bad_epochs = s["best_epoch"], s["bad_epochs"]
                best_acc = -math.inf if s["best_acc"] is None else s["best_acc"]
                best_state = saved.best
                if ema is not None and saved.ema is not None:
                    ema = [t.to(dev) for t in saved.ema]
                weights_are_best = s["weights_are_best"]
                history = [Progress(**p) for p in s["history"]]
                start -= s["seconds"]
                resumed_from = epochs_done
            model.train()
            while stopped_by is None:
                if budget.epochs is not None and epochs_done >= budget.epochs:
                    stopped_by = "epochs"
                    break
                run.start_epoch(epochs_done)
                perm = torch.randperm(n, generator=gen).to(dev)
                rep_idx = None
                if rx is not None:
                    rep_idx = torch.randint(0, len(rx), (n_batches, n_rep), generator=gen).to(dev)
                loss_sum = torch.zeros((), device=dev)
                batches = 0
                for b in range(n_batches):
                    if should_stop is not None and should_stop():
                        stopped_by = "interrupted"
                        break
                    idx = perm[b * n_new : (b + 1) * n_new]
                    xb, yb = xd[idx], yd[idx]
                    zb = None
                    if rep_idx is not None and rx is not None and ry is not None:
                        if len(idx) == n_new:
                            r = rep_idx[b]
                        else:
                            r = rep_idx[b, : max(1, round(len(idx) * n_rep / n_new))]
                        xb, yb = torch.cat([xb, rx[r]]), torch.cat([yb, ry[r]])
                        zb = None if rz is None else rz[r]
                    if scheduled:
                        f = lr_factor(step, warmup=adapt.warmup_steps, schedule=adapt.schedule,
                                      total=total_steps, min_ratio=adapt.min_lr_ratio)
                        for group, base in zip(opt.param_groups, base_lrs, strict=True):
                            group["lr"] = base * f
                    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
                        logits = model(xb)
                    if criterion == "balanced" and log_prior is None:
                        log_prior = _log_prior(yd, ry, n_new, n_rep, logits.shape[1])
                    loss = _loss(logits.float(), yb, log_prior)
                    if penalty is not None:
                        loss = loss + penalty(model, Batch(xb, yb, logits, len(idx), zb))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()  # type: ignore[no-untyped-call]
                    if clip is not None:
                        torch.nn.utils.clip_grad_norm_(params, clip)
                    opt.step()
                    if ema is not None:
                        d = min(adapt.ema_decay or 0.0, (1 + step) / (10 + step))
                        torch._foreach_lerp_(ema, live, 1.0 - d)
                    weights_are_best = False
                    loss_sum += loss.detach()
                    batches += 1
                    step += 1
                    samples += len(yb)
                    new_samples += len(idx)
                    if budget.steps is not None and step >= budget.steps:
                        stopped_by = "steps"
                    elif budget.seconds is not None and (
                        time.perf_counter() - start >= budget.seconds
                    ):
                        stopped_by = "seconds"
                    if stopped_by is not None:
                        break
                if batches == 0:
                    break
                completed = batches == n_batches
                epochs_done += completed
                final_loss = float(loss_sum) / batches
                val_acc = None
                if vd is not None and completed:
                    held = None
                    if ema is not None:  # validate (and keep) the averaged weights
                        held = [t.clone() for t in live]
                        torch._foreach_copy_(live, ema)
                    val_acc = accuracy(model, *vd)
                    model.train()
                    if val_acc > best_acc:
                        best_acc, best_epoch, bad_epochs = val_acc, epochs_done, 0
                        best_state = copy.deepcopy(model.state_dict())
                        weights_are_best = held is None
                    else:
                        bad_epochs += 1
                        if stopped_by is None and patience is not None and bad_epochs >= patience:
                            stopped_by = "early_stopping"
                    if held is not None:
                        torch._foreach_copy_(live, held)
                report = Progress(
                    epoch=epochs_done + (not completed),
                    step=step,
                    samples=samples,
                    loss=final_loss,
                    seconds=time.perf_counter() - start,
                    val_accuracy=val_acc,
                )
                history.append(report)
                if progress is not None:
                    progress(report)
                if ckpt_dir is not None and completed and stopped_by != "interrupted":
                    rng = {"gen": gen.get_state(), "cpu": torch.get_rng_state()}
                    if dev.type == "cuda":
                        rng["cuda"] = torch.cuda.get_rng_state(dev)
                    ckpt.save(
                        ckpt_dir, fingerprint=fingerprint, model=model.state_dict(),
                        best=best_state, optimizer=opt.state_dict(), rng=rng, ema=ema,
                        loop={
                            "epochs": epochs_done, "step": step, "samples": samples,
                            "new_samples": new_samples, "loss": final_loss,
                            "stopped_by": stopped_by, "best_epoch": best_epoch,
                            "bad_epochs": bad_epochs,
                            "best_acc": None if best_acc == -math.inf else best_acc,
                            "weights_are_best": weights_are_best,
                            "history": [asdict(p) for p in history],
                            "seconds": time.perf_counter() - start,
                        },
                    )
        if best_state is not None and not weights_are_best:
            model.load_state_dict(best_state)
        elif best_state is None and ema is not None:
            torch._foreach_copy_(live, ema)
    finally:
        run.finish()
        model.to(home)
        model.train(was_training)

    seconds = time.perf_counter() - start
    extra: dict[str, Any] = {
        "device": str(dev),
        "new_samples": new_samples,
        "rehearsal_samples": samples - new_samples,
        "samples_per_second": samples / seconds if seconds > 0 else math.nan,
        "resumed_from_epoch": resumed_from,
    }
    if vd is not None:
        evaluations = sum(p.val_accuracy is not None for p in history)
        extra["validation_samples"] = evaluations * len(vd[1])
        extra["best_epoch"] = best_epoch
        extra["best_val_accuracy"] = best_acc if best_state is not None else math.nan
    return TrainResult(
        samples_processed=samples,
        steps=step,
        epochs=epochs_done,
        seconds=seconds,
        final_loss=final_loss,
        stopped_by=stopped_by or "epochs",
        history=tuple(history),
        extra=extra,
    )
