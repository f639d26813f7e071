"""The training loop: explicit, seeded, budgeted, interruptible, resumable.

One loop for every strategy. An epoch is one pass over the new data in shuffled order;
with rehearsal, each batch is ``batch_size`` rows of which ``round(mix * batch_size)``
are drawn uniformly (with replacement) from the rehearsal set. Data are indexed as
tensors on the training device; there is no ``DataLoader``. The loss is cross-entropy
(or, for a request with ``regression``, the squared or Huber error of the model's one
output) plus an optional :class:`~strategies.base.Penalty` (EWC, LwF, DER's logit replay).

Randomness: shuffling and rehearsal draws come from a ``torch.Generator`` seeded with
``seed``; layers that draw from torch's global RNG (dropout) run inside
``torch.random.fork_rng`` with a seed derived from ``seed``, so the same seed gives the
same model and the caller's RNG state is left as it was.

Data-parallel: inside a process group of N > 1 processes the model trains wrapped in
``DistributedDataParallel`` on each rank's shard (:mod:`strategies.distributed`).

Resumption: with ``checkpoint``, the state at the end of every epoch (weights, optimizer,
RNG states, the counters of :class:`~strategies.checkpoint.LoopState`) is saved there; a
later call with the same request, recipe and starting model continues from it and ends
where an uninterrupted run would have.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from strategies import checkpoint as ckpt
from strategies import distributed
from strategies.adaptation import AdaptConfig, Plan, lr_factor, plan
from strategies.base import (
    Batch,
    Budget,
    Progress,
    Recipe,
    RegressionLoss,
    TrainRequest,
    TrainResult,
)
from strategies.losses import balanced_log_prior, cross_entropy, regression_loss, val_score


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


def _fingerprint(model: nn.Module, x: torch.Tensor, n_rep: int, batch_size: int, seed: int,
                 budget: Budget, ema_decay: float | None,
                 regression: RegressionLoss | None = None) -> dict[str, Any]:
    fp = {
        "seed": seed,
        "rows": len(x),
        "row_shape": list(x.shape[1:]),
        "rehearsal_per_batch": n_rep,
        "batch_size": batch_size,
        "parameters": [n for n, p in model.named_parameters() if p.requires_grad],
        "budget": asdict(budget),
    }
    if ema_decay is not None:  # absent without averaging: those runs' fingerprints lack it
        fp["ema_decay"] = ema_decay
    if regression is not None:  # likewise absent for classification
        fp["regression"] = asdict(regression)
    return fp


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
    >>> from strategies.base import OptimizerSpec
    >>> model = torch.nn.Linear(2, 2)
    >>> x, y = torch.randn(64, 2), torch.randint(0, 2, (64,))
    >>> r = fit(TrainRequest(model, x, y, budget=Budget(epochs=2), seed=0, device="cpu"),
    ...         Recipe(batch_size=16, optimizer=OptimizerSpec(1e-2, 0.0)))
    >>> r.epochs, r.steps, r.stopped_by
    (2, 8, 'epochs')
    """
    _check(request.x, request.y, recipe.rehearsal, recipe.mix, recipe.batch_size, request.budget)
    if recipe.patience is not None and recipe.patience < 1:
        raise ValueError(f"patience must be positive, got {recipe.patience}")
    adapt = recipe.adapt or AdaptConfig()
    x, y, val = request.x, request.y, request.val
    if val is None and adapt.validation_fraction is not None:
        (x, y), val = split_validation(x, y, adapt.validation_fraction, request.seed)
    start = time.perf_counter()
    dev = pick_device(request.device)
    model = request.model
    home, was_training = _home_device(model), model.training
    data = _Data.on(dev, x, y, val, recipe, regression=request.regression is not None)
    model.to(dev)
    adapted = plan(model, adapt, lr=recipe.optimizer.lr,
                   weight_decay=recipe.optimizer.weight_decay, seed=request.seed)
    try:
        run = _Run(request, recipe, adapt, data, dev, adapted, start)
        with torch.random.fork_rng(devices=run.fork_devices):
            _seed_global_rngs(run.dropout_seed, dev)
            run.resume(ckpt_dir=None if request.checkpoint is None else Path(request.checkpoint),
                       fingerprint=_fingerprint(model, x, data.n_rep, recipe.batch_size,
                                                request.seed, request.budget, adapt.ema_decay,
                                                request.regression))
            model.train()
            while run.state.stopped_by is None:
                if request.budget.epochs is not None and run.state.epochs >= request.budget.epochs:
                    run.state.stopped_by = "epochs"
                    break
                batches, loss_sum = run.epoch()
                if batches == 0:
                    break
                run.end_epoch(batches, loss_sum)
        run.keep_final_weights()
    finally:
        adapted.finish()
        model.to(home)
        model.train(was_training)
    return run.result()


@dataclass(frozen=True, eq=False)
class _Data:
    """A run's rows on the training device and how its batches are made of them:
    ``n_new`` new rows and ``n_rep`` rehearsal rows (``rx``, ``ry``, their stored logits
    ``rz``) per full batch, ``n_batches`` batches an epoch."""

    x: torch.Tensor
    y: torch.Tensor
    rx: torch.Tensor | None
    ry: torch.Tensor | None
    rz: torch.Tensor | None
    val: tuple[torch.Tensor, torch.Tensor] | None
    n_new: int
    n_rep: int
    n_batches: int

    @staticmethod
    def on(
        dev: torch.device,
        x: torch.Tensor,
        y: torch.Tensor,
        val: tuple[torch.Tensor, torch.Tensor] | None,
        recipe: Recipe,
        regression: bool = False,
    ) -> _Data:
        label = torch.float32 if regression else torch.int64
        rx = ry = rz = None
        reh = recipe.rehearsal
        if reh is not None and len(reh[1]) > 0 and recipe.mix > 0:
            rx, ry = reh[0].to(dev, torch.float32), reh[1].to(dev, label)
            if recipe.rehearsal_logits is not None:
                if len(recipe.rehearsal_logits) != len(ry):
                    raise ValueError("rehearsal_logits do not line up with the rehearsal rows")
                rz = recipe.rehearsal_logits.to(dev, torch.float32)
        bs = recipe.batch_size
        n_rep = 0 if rx is None else min(round(bs * recipe.mix), bs - 1)
        vd = None if val is None else (val[0].to(dev, torch.float32), val[1].to(dev, label))
        w = distributed.world()  # with N processes each takes its shard: ceil(n / N) rows
        rows = len(y) if w is None else math.ceil(len(y) / w[1])
        return _Data(x.to(dev, torch.float32), y.to(dev, label), rx, ry, rz, vd,
                     bs - n_rep, n_rep, math.ceil(rows / (bs - n_rep)))


class _Run:
    """One call of :func:`fit` once set up: its data, optimizer, averaged weights, best
    epoch's weights and counters (:class:`~strategies.checkpoint.LoopState`)."""

    def __init__(self, request: TrainRequest, recipe: Recipe, adapt: AdaptConfig, data: _Data,
                 dev: torch.device, adapted: Plan, start: float) -> None:
        self.req, self.recipe, self.adapt, self.data, self.dev = request, recipe, adapt, data, dev
        self.model, self.plan, self.start = request.model, adapted, start
        self.world = distributed.world()
        self.fwd = self.model if self.world is None else distributed.wrap(self.model, dev)
        self.gen = torch.Generator().manual_seed(request.seed)
        self.dropout_seed = int(torch.randint(0, 2**62, (1,), generator=self.gen))
        self.fork_devices: list[int] = []
        if dev.type == "cuda":
            self.fork_devices = [dev.index if dev.index is not None
                                 else torch.cuda.current_device()]
        self.opt = adapted.optimizer(fused=dev.type == "cuda")
        self.base_lrs = adapted.base_lrs()
        self.params = adapted.parameters
        self.live = [p.detach() for p in self.params]
        self.ema = None if adapt.ema_decay is None else [t.clone() for t in self.live]
        self.total_steps = _total_steps(request.budget, data.n_batches)
        self.log_prior: torch.Tensor | None = None  # "balanced": set once the width is known
        self.state = ckpt.LoopState()
        self.best: dict[str, torch.Tensor] | None = None
        self.resumed_from = 0
        self.ckpt_dir: Path | None = None
        self.fingerprint: dict[str, Any] = {}
        if recipe.penalty is not None:
            recipe.penalty.prepare(dev)

    def resume(self, ckpt_dir: Path | None, fingerprint: dict[str, Any]) -> None:
        """Continue from the checkpoint in ``ckpt_dir``, if it holds one of this run."""
        self.ckpt_dir, self.fingerprint = ckpt_dir, fingerprint
        saved = None if ckpt_dir is None else ckpt.load(ckpt_dir, fingerprint)
        if saved is None:
            return
        self.model.load_state_dict(saved.model)
        self.opt.load_state_dict(saved.optimizer)
        self.gen.set_state(saved.rng["gen"])
        torch.set_rng_state(saved.rng["cpu"])
        if self.dev.type == "cuda" and "cuda" in saved.rng:
            torch.cuda.set_rng_state(saved.rng["cuda"], self.dev)
        self.state, self.best = saved.state, saved.best
        if self.ema is not None and saved.ema is not None:
            self.ema = [t.to(self.dev) for t in saved.ema]
        self.start -= saved.state.seconds
        self.resumed_from = saved.state.epochs

    def epoch(self) -> tuple[int, torch.Tensor]:
        """One pass over the new rows (or until a budget or ``should_stop`` ends it);
        returns the steps taken and their summed loss."""
        model, opt, st, adapt, dev = self.model, self.opt, self.state, self.adapt, self.dev
        penalty, should_stop, budget = self.recipe.penalty, self.req.should_stop, self.req.budget
        xd, yd, rx, ry, rz = self.data.x, self.data.y, self.data.rx, self.data.ry, self.data.rz
        n_new, n_rep, n_batches = self.data.n_new, self.data.n_rep, self.data.n_batches
        ema, live, params, log_prior = self.ema, self.live, self.params, self.log_prior
        scheduled = adapt.warmup_steps > 0 or adapt.schedule != "constant"
        balanced, clip = self.recipe.criterion == "balanced", adapt.max_grad_norm
        regression = self.req.regression
        use_bf16 = dev.type == "cuda"
        self.plan.start_epoch(st.epochs)
        perm, rep_idx = self._order(len(yd), None if rx is None else len(rx))
        loss_sum = torch.zeros((), device=dev)
        step, samples, new_samples, batches = st.step, st.samples, st.new_samples, 0
        for b in range(n_batches):
            if should_stop is not None and should_stop():
                st.stopped_by = "interrupted"
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
                              total=self.total_steps, min_ratio=adapt.min_lr_ratio)
                for group, base in zip(opt.param_groups, self.base_lrs, strict=True):
                    group["lr"] = base * f
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
                logits = self.fwd(xb)
            if regression is not None:
                loss = regression_loss(logits.float(), yb, regression)
            else:
                if balanced and log_prior is None:
                    log_prior = self.log_prior = balanced_log_prior(yd, ry, n_new, n_rep,
                                                            logits.shape[1])
                loss = cross_entropy(logits.float(), yb, log_prior)
            if penalty is not None:
                loss = loss + penalty(model, Batch(xb, yb, logits, len(idx), zb))
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            if ema is not None:
                decay = min(adapt.ema_decay or 0.0, (1 + step) / (10 + step))
                torch._foreach_lerp_(ema, live, 1.0 - decay)
            loss_sum += loss.detach()
            batches += 1
            step += 1
            samples += len(yb)
            new_samples += len(idx)
            if budget.steps is not None and step >= budget.steps:
                st.stopped_by = "steps"
            elif budget.seconds is not None and self._out_of_time():
                st.stopped_by = "seconds"
            if st.stopped_by is not None:
                break
        st.step, st.samples, st.new_samples = step, samples, new_samples
        if batches:
            st.weights_are_best = False
        return batches, loss_sum

    def _order(self, n: int, n_reh: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The epoch's new-row order and rehearsal draws; with a process group, this rank's."""
        d, dev = self.data, self.dev
        if self.world is None:
            perm = torch.randperm(n, generator=self.gen).to(dev)
            return perm, None if n_reh is None else torch.randint(
                0, n_reh, (d.n_batches, d.n_rep), generator=self.gen).to(dev)
        (rank, size), epoch, seed = self.world, self.state.epochs, self.req.seed
        return distributed.shard(n, seed, epoch, rank, size).to(dev), None if n_reh is None \
            else distributed.rehearsal_draws(n_reh, d.n_batches, d.n_rep, seed, epoch, rank,
                                             size).to(dev)

    def _out_of_time(self) -> bool:
        late = time.perf_counter() - self.start >= (self.req.budget.seconds or 0.0)
        return late if self.world is None else distributed.any_rank(late, self.dev)

    def end_epoch(self, batches: int, loss_sum: torch.Tensor) -> None:
        """Count the epoch, validate it if it completed, report it, checkpoint it."""
        st = self.state
        completed = batches == self.data.n_batches
        st.epochs += completed
        st.loss = float(loss_sum) / batches
        val_acc = self._validate() if self.data.val is not None and completed else None
        report = Progress(epoch=st.epochs + (not completed), step=st.step, samples=st.samples,
                          loss=st.loss, seconds=time.perf_counter() - self.start,
                          val_accuracy=val_acc)
        st.history.append(report)
        if self.req.progress is not None:
            self.req.progress(report)
        if (self.ckpt_dir is not None and completed and st.stopped_by != "interrupted"
                and distributed.is_writer()):  # rank 0 alone writes the checkpoint
            self._save(self.ckpt_dir)

    def _validate(self) -> float:
        """Validation accuracy (of the averaged weights, with ``ema_decay``); keeps the
        best epoch's weights and decides early stopping."""
        assert self.data.val is not None
        st, held = self.state, None
        if self.ema is not None:  # validate (and keep) the averaged weights
            held = [t.clone() for t in self.live]
            torch._foreach_copy_(self.live, self.ema)
        val_acc = val_score(self.model, *self.data.val, self.req.regression is not None)
        self.model.train()
        if val_acc > st.best_acc:
            st.best_acc, st.best_epoch, st.bad_epochs = val_acc, st.epochs, 0
            self.best = copy.deepcopy(self.model.state_dict())
            st.weights_are_best = held is None
        else:
            st.bad_epochs += 1
            patience = self.recipe.patience
            if st.stopped_by is None and patience is not None and st.bad_epochs >= patience:
                st.stopped_by = "early_stopping"
        if held is not None:
            torch._foreach_copy_(self.live, held)
        return val_acc

    def _save(self, directory: Path) -> None:
        rng = {"gen": self.gen.get_state(), "cpu": torch.get_rng_state()}
        if self.dev.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.dev)
        self.state.seconds = time.perf_counter() - self.start
        ckpt.save(directory, fingerprint=self.fingerprint, model=self.model.state_dict(),
                  best=self.best, optimizer=self.opt.state_dict(), rng=rng, ema=self.ema,
                  state=self.state)

    def keep_final_weights(self) -> None:
        """End on the best epoch's weights (with validation) or the averaged ones."""
        if self.best is not None and not self.state.weights_are_best:
            self.model.load_state_dict(self.best)
        elif self.best is None and self.ema is not None:
            torch._foreach_copy_(self.live, self.ema)

    def result(self) -> TrainResult:
        st, seconds = self.state, time.perf_counter() - self.start
        extra: dict[str, Any] = {
            "device": str(self.dev),
            "new_samples": st.new_samples,
            "rehearsal_samples": st.samples - st.new_samples,
            "samples_per_second": st.samples / seconds if seconds > 0 else math.nan,
            "resumed_from_epoch": self.resumed_from,
        }
        if self.world is not None:
            extra["world_size"] = self.world[1]
        if self.data.val is not None:
            evaluations = sum(p.val_accuracy is not None for p in st.history)
            extra["validation_samples"] = evaluations * len(self.data.val[1])
            extra["best_epoch"] = st.best_epoch
            extra["best_val_accuracy"] = st.best_acc if self.best is not None else math.nan
        return TrainResult(samples_processed=st.samples, steps=st.step, epochs=st.epochs,
                           seconds=seconds, final_loss=st.loss,
                           stopped_by=st.stopped_by or "epochs", history=tuple(st.history),
                           extra=extra)
