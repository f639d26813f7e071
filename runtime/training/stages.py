"""Staged training of v1: the config's ``stages:`` in order, each with exit criteria.

For example pretrain (broad data, from scratch) → finetune (task data, frozen backbone or
layerwise learning rates) → adapt (LoRA). Each stage trains the same model with its own
strategy and budget on its own data (a file, or the bootstrap rows), is measured on its
validation split, writes its own checkpoint (``<state_dir>/stages/<version>/<i>-<name>/``:
``model.safetensors`` + ``stage.json`` with the sha256, metrics and config) and records
one ``stage.finished`` event. A stage that misses an exit criterion ends the run with a
one-line :class:`StageFailed`; later stages do not run. Before any stage trains,
:func:`preflight` checks every stage's data file and adaptation against the model, so a
typo in the last stage fails at once, naming its key (``driftloop validate`` runs it too).

Every stage's training rows go into the rehearsal buffer after it (as after a retrain),
so a later stage can replay earlier ones and v1's buffer remembers them all.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from safetensors.torch import save as st_save
from torch import nn
from torch.nn import functional as F

from runtime.config import DriftloopConfig, ExitCriterion, SchemaConfig, StageConfig
from runtime.intake.directory_source import read_file
from runtime.intake.validation import Validator
from runtime.store import events as ev
from runtime.store.atomic import write_bytes_atomic, write_json_atomic
from runtime.store.events import EventLog
from strategies import adaptation
from strategies.base import Budget, Progress, RehearsalBuffer, TrainRequest
from strategies.evaluation import predict_logits
from strategies.models import fit_normalization
from strategies.registry import build as build_strategy

Split = tuple[torch.Tensor, torch.Tensor]


class StageFailed(RuntimeError):
    """A stage missed its exit criteria (one line: which, and by how much)."""


@dataclass(frozen=True)
class StageResult:
    name: str
    passed: bool
    metrics: dict[str, Any]
    failures: list[str]
    checkpoint: str
    sha256: str


def load_rows(
    path: Path, schema: SchemaConfig, names: dict[float, str] | None = None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """The feature matrix (in the stored form: categories as codes, sentences as token
    ids, NaN where a missing value is allowed) and class positions of a stage's data
    file, read by the ingest validator's rules; one-line errors naming the first bad row.

    ``schema`` should carry the types the stored rows were read with
    (:func:`runtime.intake.schema_state.resolved`); an undeclared type is inferred here.
    ``names`` (if given) receives the text of each category code read.
    """
    if not path.exists():
        raise StageFailed(f"stage data {path}: no such file")
    batch = read_file(path, schema)
    if batch.read_error:
        raise StageFailed(f"stage data {path}: {batch.read_error}")
    frame = batch.frame.reset_index(drop=True)
    missing = [c for c in (*schema.inputs, schema.label) if c not in frame.columns]
    if missing:
        raise StageFailed(f"stage data {path}: missing column(s) {', '.join(missing)}")
    validator = Validator(schema)
    validator.infer(frame)
    x, reasons = validator.encode(frame[list(schema.inputs)])
    labels = validator.labels(frame, reasons).to_numpy()
    if names is not None:
        names.update(validator.codes)
    for i in np.flatnonzero(labels < 0):
        reasons.setdefault(int(i), "label is missing")
    if reasons:
        first = min(reasons)
        raise StageFailed(f"stage data {path}: row {first + 1}: {reasons[first]}")
    y = np.full(len(labels), -1, dtype=np.int64)
    for pos, value in enumerate(schema.class_values):
        y[labels == value] = pos
    return x, y


def metrics(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n_classes: int) -> dict[str, float]:
    """Accuracy, balanced accuracy (mean recall over the classes present) and loss."""
    logits = predict_logits(model, x)
    pred = logits.argmax(dim=1)
    recalls = [float((pred[y == c] == c).float().mean()) for c in range(n_classes)
               if bool((y == c).any())]
    return {
        "accuracy": float((pred == y).float().mean()),
        "balanced_accuracy": float(np.mean(recalls)),
        "loss": float(F.cross_entropy(logits, y)),
    }


def check_exit(values: dict[str, float], criteria: list[ExitCriterion]) -> list[str]:
    """The criteria missed, each as ``"accuracy 0.812 < 0.9"``; empty when all pass."""
    missed = []
    for c in criteria:
        v = values[c.metric]
        if math.isnan(v):
            missed.append(f"{c.metric} is NaN")
        elif c.min is not None and v < c.min:
            missed.append(f"{c.metric} {v:.4f} < {c.min}")
        elif c.max is not None and v > c.max:
            missed.append(f"{c.metric} {v:.4f} > {c.max}")
    return missed


def _describe(criteria: list[ExitCriterion]) -> dict[str, str]:
    out: dict[str, str] = {}
    for c in criteria:
        bounds = [f">= {c.min}"] if c.min is not None else []
        bounds += [f"<= {c.max}"] if c.max is not None else []
        out[c.metric] = " and ".join(bounds)
    return out


def _split(x: npt.NDArray[np.float64], y: npt.NDArray[np.int64], fraction: float,
           seed: int) -> tuple[Split, Split]:
    perm = np.random.default_rng(seed).permutation(len(y))
    n_val = min(len(y) - 1, max(1, round(len(y) * fraction)))
    val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])

    def t(idx: npt.NDArray[np.int64]) -> Split:
        return (torch.as_tensor(x[idx], dtype=torch.float32),
                torch.as_tensor(y[idx], dtype=torch.int64))

    return t(train), t(val)


def stage_data(cfg: DriftloopConfig, stage: StageConfig, index: int,
               task: tuple[Split, Split], schema: SchemaConfig | None = None
               ) -> tuple[Split, Split, str]:
    """``(train, val, source)`` of a stage: its own file split (read with ``schema``,
    the config's by default), or the bootstrap rows."""
    if stage.data is None:
        return task[0], task[1], "bootstrap rows"
    x, y = load_rows(stage.data, schema or cfg.schema)
    if len(y) < 2:
        raise StageFailed(f"stage {stage.name!r}: {stage.data} has {len(y)} rows")
    train, val = _split(x, y, stage.validation_fraction, cfg.seed * 7919 + index)
    return train, val, str(stage.data)


def preflight(cfg: DriftloopConfig, model: nn.Module) -> None:
    """Check every stage before any trains: its data file exists and its ``adapt`` fits
    ``model`` (patterns that match, LoRA targets it has, something left to train).

    Raises :class:`StageFailed` naming the stage's key; ``model`` is not touched.
    """
    for i, stage in enumerate(cfg.stages):
        if stage.data is not None and not stage.data.is_file():
            raise StageFailed(f"'stages[{i}].data' (stage {stage.name!r}): "
                              f"no such file {stage.data}")
        try:
            adaptation.check(model, stage.strategy.adapt)
        except ValueError as err:
            raise StageFailed(adapt_error(f"stages[{i}].strategy", err,
                                          f" (stage {stage.name!r})")) from None


def adapt_error(key: str, err: ValueError, note: str = "") -> str:
    """An error of :func:`strategies.adaptation.check` for the strategy config at ``key``,
    as one line naming the full key (``'retrain.strategy.adapt.freeze': ...``)."""
    msg = str(err)
    field, _, problem = msg.partition(": ") if msg.startswith("adapt.") else ("adapt", "", msg)
    return f"'{key}.{field}'{note}: {problem}"


def _save_checkpoint(directory: Path, model: nn.Module, meta: dict[str, Any]) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    blob = st_save({k: v.detach().cpu().contiguous().clone() for k, v in state.items()})
    write_bytes_atomic(directory / "model.safetensors", blob)
    digest = hashlib.sha256(blob).hexdigest()
    write_json_atomic(directory / "stage.json", {**meta, "sha256": digest})
    return digest


def run_stages(
    cfg: DriftloopConfig,
    model: nn.Module,
    task: tuple[Split, Split],
    buffer: RehearsalBuffer,
    *,
    events: EventLog,
    version: str,
    report: Callable[[str], None],
    schema: SchemaConfig | None = None,
) -> list[StageResult]:
    """Run every stage on ``model`` (in place); raises :class:`StageFailed` on a miss.

    ``task`` is the bootstrap rows' ``(train, val)`` split; ``buffer`` receives each
    stage's training rows after it; ``schema`` reads the stage files (the types the
    stored rows were read with; the config's by default). The model's input
    normalisation (if it has one) is fitted on the first stage's training rows.
    """
    preflight(cfg, model)
    results: list[StageResult] = []
    n_classes = len(cfg.schema.classes)
    for i, stage in enumerate(cfg.stages, start=1):
        (xt, yt), (xv, yv), source = stage_data(cfg, stage, i, task, schema)
        strategy = build_strategy(stage.strategy)
        b = stage.budget
        if i == 1:
            fit_normalization(model, xt)

        def progress(p: Progress, name: str = stage.name) -> None:
            events.append(ev.RETRAIN_PROGRESS, ev.RetrainProgress(
                trigger_id=f"stage:{name}", epoch=p.epoch, step=p.step, samples=p.samples,
                loss=round(p.loss, 6), seconds=round(p.seconds, 3), val_accuracy=p.val_accuracy,
            ), model_version=version)

        report(f"stage {i}/{len(cfg.stages)} {stage.name}: {stage.strategy.kind} on "
               f"{len(yt)} rows of {source}")
        started = time.perf_counter()
        budget = Budget(epochs=b.epochs, steps=b.steps, seconds=b.seconds)
        result = strategy.train(TrainRequest(model, xt, yt, buffer=buffer, budget=budget,
                                             seed=cfg.seed + i, progress=progress, val=(xv, yv),
                                             device=cfg.retrain.torch_device))
        model.eval()
        values = metrics(model, xv, yv, n_classes)
        missed = check_exit(values, stage.exit)
        stage_metrics = {
            **{k: round(v, 6) for k, v in values.items()},
            "train_rows": len(yt), "val_rows": len(yv), "samples": result.samples_processed,
            "epochs": result.epochs, "stopped_by": result.stopped_by,
            "seconds": round(time.perf_counter() - started, 3),
        }
        directory = cfg.state_dir / "stages" / version / f"{i}-{stage.name}"
        digest = _save_checkpoint(directory, model, {
            "version": 1, "stage": stage.name, "index": i, "model_version": version,
            "passed": not missed, "metrics": stage_metrics, "data": source,
            "config": stage.model_dump(mode="json"),
        })
        res = StageResult(stage.name, not missed, stage_metrics, missed,
                          str(directory / "model.safetensors"), digest)
        results.append(res)
        events.append(ev.STAGE_FINISHED, ev.StageFinished(
            stage=stage.name, index=i, passed=res.passed, metrics=stage_metrics,
            exit_criteria=_describe(stage.exit), missed=tuple(missed),
            checkpoint=res.checkpoint, sha256=digest,
        ), model_version=version)
        verdict = "passed" if not missed else "MISSED " + "; ".join(missed)
        wanted = ", ".join(f"{k} {v}" for k, v in _describe(stage.exit).items())
        report(f"stage {i}/{len(cfg.stages)} {stage.name}: accuracy {values['accuracy']:.4f}, "
               f"balanced accuracy {values['balanced_accuracy']:.4f}, loss {values['loss']:.4f} "
               f"({result.epochs} epochs, {stage_metrics['seconds']:.1f} s); exit criteria "
               f"{wanted or 'none'}: {verdict}")
        if missed:
            raise StageFailed(f"stage {stage.name!r} missed its exit criteria: "
                              f"{'; '.join(missed)} (checkpoint {directory})")
        buffer.add(xt, yt)
    return results
