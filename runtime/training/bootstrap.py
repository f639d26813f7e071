"""Training the first model (v1) from an initial dataset.

The rows are split three ways: a golden set (never trained on; the gate guards it for
ever after), a validation split for the exit criterion, and the training rows. v1 is
saved as a complete unit (weights, rehearsal buffer seeded with its training rows,
reference window, golden set) and promoted; ``stage.finished`` records the metrics.

With ``stages:`` in the config, v1 is trained by :mod:`runtime.training.stages` instead (one
``stage.finished`` per stage, each stage checkpointed); v1's meta carries the whole
lineage (every stage's metrics, checkpoint and sha256).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import torch

from runtime.config import DriftloopConfig, SchemaConfig
from runtime.intake.schema_state import column_specs, resolved
from runtime.intake.text_columns import tokenizers
from runtime.store import events as ev
from runtime.store.db import Database
from runtime.store.events import EventLog
from runtime.store.unit import fit_target, new_buffer, new_model, save_unit
from runtime.store.versions import Registry
from runtime.training.retrain_job import regression_loss, targets
from runtime.training.stages import Split, StageFailed, load_rows, run_stages
from strategies import finetune
from strategies.base import Budget, Progress, TrainRequest, TrainResult
from strategies.evaluation import accuracy, predict_logits
from strategies.models import fit_normalization
from strategies.tabular import Preprocessing, fit_preprocessing


class BootstrapError(RuntimeError):
    """A stage missed its exit criteria (the message says which and by how much)."""


class Split3(NamedTuple):
    """Row positions of the golden, validation and training splits."""

    gold: npt.NDArray[np.int64]
    val: npt.NDArray[np.int64]
    train: npt.NDArray[np.int64]


def split_rows(cfg: DriftloopConfig, n: int) -> Split3:
    """v1's split of ``n`` labelled rows, drawn with the config's seed and fractions
    (``bootstrap.golden_fraction``, ``bootstrap.validation_fraction``); the golden rows in
    their stored order. ValueError for fewer than 10 rows."""
    if n < 10:
        raise ValueError(f"bootstrap needs labelled rows, got {n}")
    b = cfg.bootstrap
    perm = np.random.default_rng(cfg.seed).permutation(n)
    n_gold = max(1, round(n * b.golden_fraction))
    n_val = max(1, round(n * b.validation_fraction))
    return Split3(np.sort(perm[:n_gold]), perm[n_gold:n_gold + n_val], perm[n_gold + n_val:])


def bootstrap_from_rows(
    cfg: DriftloopConfig,
    db: Database,
    events: EventLog,
    registry: Registry,
    x: npt.NDArray[np.float64],
    y_raw: npt.NDArray[np.int64],
    *,
    first_row: int | None,
    last_row: int | None,
    source: str = "stream",
    report: Callable[[str], None] = lambda _: None,
) -> str:
    """Train, check, save and promote v1; returns its version name."""
    b = cfg.bootstrap
    y = targets(y_raw, cfg)
    label = torch.float32 if cfg.task == "regression" else torch.int64
    n = len(y)
    try:
        gold, val, train = split_rows(cfg, n)
    except ValueError as err:
        raise BootstrapError(str(err)) from None
    xt = torch.as_tensor(x[train], dtype=torch.float32)
    yt = torch.as_tensor(y[train], dtype=label)
    xv = torch.as_tensor(x[val], dtype=torch.float32)
    yv = torch.as_tensor(y[val], dtype=label)

    schema, _ = resolved(db, cfg.schema)
    stage_names: dict[float, str] = {}
    fitted = _fitted_rows(cfg, schema, x[train], stage_names)
    prep = _preprocessing(cfg, db, fitted, report, stage_names)
    target = fit_target(y[train]) if cfg.task == "regression" else None
    scale = None if target is None else (target["mean"], target["std"])
    model = new_model(cfg, seed=cfg.seed, prep=prep, target=scale)
    version = registry.next_version()
    if cfg.stages:
        return _staged(cfg, events, registry, model, version, x, y, (xt, yt), (xv, yv),
                       gold, len(train), first_row=first_row, last_row=last_row,
                       source=source, report=report, schema=schema, prep=prep)
    fit_normalization(model, xt)
    stop_on = None if prep is None or b.patience is None else (xv, yv)  # early stopping
    result = _train_v1(cfg, events, model, version, (xt, yt), stop_on, target, report)
    model.eval()
    gold_x = torch.as_tensor(x[gold], dtype=torch.float32)
    gold_y = torch.as_tensor(y[gold], dtype=label)
    metrics = {**scores(cfg, model, (xv, yv), (gold_x, gold_y), yt),
               "train_rows": len(train), "val_rows": len(val), "golden_rows": len(gold),
               "samples": result.samples_processed, "seconds": round(result.seconds, 3),
               "final_loss": result.final_loss}
    _exit_criterion(cfg, events, version, metrics, report)
    buffer = new_buffer(cfg)
    buffer.add(xt, yt)
    reference = x[-cfg.retrain.reference_size:]
    meta = {
        "trigger_id": "bootstrap",
        "data": {"first_row": first_row, "last_row": last_row, "rows": n, "source": source},
        "strategy": "bootstrap", "config_hash": cfg.config_hash(), "metrics": metrics,
        "golden_index": [version],
        **({} if prep is None else {"preprocessing": prep.to_json()}),
        **({} if target is None else {"target": target}),
        "golden_provenance": {"rows": len(gold), "first_row": first_row, "last_row": last_row,
                              "source": f"held-out split of the bootstrap data ({source})"},
    }
    save_unit(registry, version, model=model, buffer=buffer, reference=reference,
              golden=(x[gold], y[gold]), meta=meta, parent=None,
              calibrate=cfg.policy.estimate.calibration,
              tokenizers=tokenizers(cfg.schema))
    registry.promote(version, ev.ModelPromoted(reason="bootstrap", metrics=metrics))
    return version


def _train_v1(
    cfg: DriftloopConfig, events: EventLog, model: torch.nn.Module, version: str,
    train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor] | None,
    target: dict[str, float] | None, report: Callable[[str], None],
) -> TrainResult:
    """Train v1 from scratch (stopping early on ``val`` when given), with progress events."""
    b = cfg.bootstrap
    strategy = finetune.build(finetune.Config(lr=b.lr, batch_size=b.batch_size,
                                              patience=b.patience))

    def progress(p: Progress) -> None:
        events.append(ev.RETRAIN_PROGRESS, ev.RetrainProgress(
            trigger_id="bootstrap", epoch=p.epoch, step=p.step, samples=p.samples,
            loss=round(p.loss, 6), seconds=round(p.seconds, 3), validated=False,
        ), model_version=version)

    report(f"bootstrap: training {version} on {len(train[1])} rows ({b.epochs} epochs)")
    return strategy.train(TrainRequest(model, *train,
                                       budget=Budget(epochs=b.epochs, steps=None, seconds=None),
                                       seed=cfg.seed, progress=progress, val=val,
                                       device=cfg.retrain.torch_device,
                                       regression=regression_loss(cfg, {"target": target})))


def scores(
    cfg: DriftloopConfig, model: torch.nn.Module, val: tuple[torch.Tensor, torch.Tensor],
    gold: tuple[torch.Tensor, torch.Tensor], yt: torch.Tensor,
) -> dict[str, float]:
    """v1's validation and golden accuracy; for regression their MAE and RMSE, and the
    validation MAE of predicting the training mean (the baseline v1 has to beat)."""
    if cfg.task != "regression":
        return {"val_accuracy": accuracy(model, *val), "golden_accuracy": accuracy(model, *gold)}
    out: dict[str, float] = {}
    for name, (x, y) in (("val", val), ("golden", gold)):
        err = predict_logits(model, x).reshape(len(y)).double() - y.double()
        out[f"{name}_mae"] = float(err.abs().mean())
        out[f"{name}_rmse"] = float(err.pow(2).mean().sqrt())
    out["val_mae_of_mean"] = float((val[1].double() - yt.double().mean()).abs().mean())
    return out


def _exit_criterion(
    cfg: DriftloopConfig, events: EventLog, version: str, metrics: dict[str, Any],
    report: Callable[[str], None],
) -> None:
    """Record ``stage.finished`` for the bootstrap; raise if v1 missed its exit criterion."""
    if cfg.task == "regression":
        _mae_criterion(cfg, events, version, metrics, report)
        return
    floor, val_acc = cfg.bootstrap.min_accuracy, metrics["val_accuracy"]
    passed = val_acc >= floor
    events.append(ev.STAGE_FINISHED, ev.StageFinished(
        stage="bootstrap", passed=passed, metrics=metrics,
        exit_criteria={"val_accuracy": f">= {floor}"},
    ), model_version=version)
    report(f"bootstrap: {version} validation accuracy {val_acc:.3f} (exit criterion >= {floor})")
    if not passed:
        raise BootstrapError(
            f"stage bootstrap missed its exit criterion: validation accuracy {val_acc:.3f} "
            f"< {floor}"
        )


def _mae_criterion(
    cfg: DriftloopConfig, events: EventLog, version: str, metrics: dict[str, Any],
    report: Callable[[str], None],
) -> None:
    """The regression exit criterion: validation MAE at most ``bootstrap.max_mae``."""
    ceiling, mae = cfg.bootstrap.max_mae, metrics["val_mae"]
    passed = ceiling is None or mae <= ceiling
    events.append(ev.STAGE_FINISHED, ev.StageFinished(
        stage="bootstrap", passed=passed, metrics=metrics,
        exit_criteria={} if ceiling is None else {"val_mae": f"<= {ceiling}"},
    ), model_version=version)
    report(f"bootstrap: {version} validation MAE {mae:.4g} (predicting the mean: "
           f"{metrics['val_mae_of_mean']:.4g}; exit criterion "
           f"{'none' if ceiling is None else f'<= {ceiling}'})")
    if not passed:
        raise BootstrapError(
            f"stage bootstrap missed its exit criterion: validation MAE {mae:.4g} > {ceiling}"
        )


def _fitted_rows(
    cfg: DriftloopConfig, schema: SchemaConfig, x: npt.NDArray[np.float64],
    names: dict[float, str],
) -> npt.NDArray[np.float64]:
    """The rows v1's preprocessing is learned from: its training rows, and with
    ``stages:`` every stage file's rows too (a category only the pretraining data has
    gets its own input instead of the unknown bucket; ``names`` receives their text)."""
    if not cfg.stages or not schema.typed:
        return x
    try:
        extra = [load_rows(st.data, schema, names)[0] for st in cfg.stages
                 if st.data is not None]
    except StageFailed as err:
        raise BootstrapError(str(err)) from None
    return np.concatenate([x, *extra]) if extra else x


def _preprocessing(
    cfg: DriftloopConfig, db: Database, x: npt.NDArray[np.float64],
    report: Callable[[str], None], more_names: dict[float, str],
) -> Preprocessing | None:
    """v1's preprocessing, learned from ``x`` (its training rows, and the stage files'),
    ``more_names`` naming the stage files' categories; ``None`` for a schema of plain
    numbers with missing values refused (rows go to the model as they are)."""
    schema, stored = resolved(db, cfg.schema)
    names = {**more_names, **stored}
    texts = schema.text_columns
    report("schema: " + ", ".join(
        f"{f} text ({len(texts[f])} token ids)" if f in texts else
        f"{f} {schema.column(f).type or 'numeric'}"
        + ("" if cfg.schema.column(f).type else " (inferred)")
        for f in schema.inputs))
    for name, tok in tokenizers(schema).items():
        last = x[:, schema.features.index(texts[name][-1])]
        report(f"schema: {name} tokenizer: the encoder's WordPiece vocabulary "
               f"({tok.vocab_size} tokens, {'lowercased' if tok.lowercase else 'cased'}), "
               f"{tok.max_length} tokens; {float(np.mean(last != 0)):.1%} of the training "
               f"sentences fill them (longer ones are cut)")
    if not schema.typed:
        return None
    prep = fit_preprocessing(x, column_specs(schema), names)
    for c in prep.columns:
        if c.type == "categorical":
            report(f"schema: {c.name} vocabulary {sorted(c.vocab)} + unknown")
    return prep


def _staged(
    cfg: DriftloopConfig,
    events: EventLog,
    registry: Registry,
    model: torch.nn.Module,
    version: str,
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.int64],
    task_train: Split,
    task_val: Split,
    gold: npt.NDArray[np.int64],
    n_train: int,
    *,
    first_row: int | None,
    last_row: int | None,
    source: str,
    report: Callable[[str], None],
    schema: SchemaConfig,
    prep: Preprocessing | None,
) -> str:
    """Run the config's stages (their files read with ``schema``, the stored rows' types);
    save and promote the last stage's model, with ``prep``, as ``version``."""
    torch.set_num_threads(cfg.torch_threads)  # `driftloop bootstrap` owns its process
    buffer = new_buffer(cfg)
    report(f"bootstrap: {len(cfg.stages)} stages for {version} "
           f"({n_train} bootstrap rows for training, {len(gold)} golden)")
    try:
        results = run_stages(cfg, model, (task_train, task_val), buffer, events=events,
                             version=version, report=report, schema=schema)
    except StageFailed as err:
        raise BootstrapError(str(err)) from None
    if all(st.data is not None for st in cfg.stages):
        buffer.add(*task_train)  # no stage trained on the bootstrap rows: remember them
    model.eval()
    gold_acc = accuracy(model, torch.as_tensor(x[gold], dtype=torch.float32),
                        torch.as_tensor(y[gold], dtype=torch.int64))
    last = results[-1]
    metrics: dict[str, Any] = {**last.metrics, "val_accuracy": last.metrics["accuracy"],
                               "golden_accuracy": gold_acc, "golden_rows": len(gold)}
    report(f"bootstrap: {version} golden accuracy {gold_acc:.4f} after {len(results)} stages")
    lineage = [{"stage": r.name, "metrics": r.metrics, "checkpoint": r.checkpoint,
                "sha256": r.sha256} for r in results]
    meta = {
        "trigger_id": "bootstrap",
        "data": {"first_row": first_row, "last_row": last_row, "rows": len(y), "source": source},
        "strategy": "staged", "config_hash": cfg.config_hash(), "metrics": metrics,
        "stages": lineage,
        "golden_index": [version],
        **({} if prep is None else {"preprocessing": prep.to_json()}),
        "golden_provenance": {"rows": len(gold), "first_row": first_row, "last_row": last_row,
                              "source": f"held-out split of the bootstrap data ({source})"},
    }
    reference = x[-cfg.retrain.reference_size:]
    save_unit(registry, version, model=model, buffer=buffer, reference=reference,
              golden=(x[gold], y[gold]), meta=meta, parent=None,
              calibrate=cfg.policy.estimate.calibration,
              tokenizers=tokenizers(cfg.schema))
    registry.promote(version, ev.ModelPromoted(reason="bootstrap", metrics=metrics,
                                               stages=tuple(r.name for r in results)))
    return version
