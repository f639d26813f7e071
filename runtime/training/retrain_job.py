"""The retrain job: runs in a child process, writes a candidate version.

The daemon's :class:`runtime.training.worker.RetrainRunner` runs :func:`main` in a child process
forked from a warm worker (or ``python -m runtime.training.retrain_job SPEC RESULT`` by hand) and
polls it. The child loads the champion's unit, trains on the labelled rows since the
drift onset plus the rehearsal buffer, measures champion and candidate on the held-out
split and on every golden set, saves the candidate unit and writes a JSON result. A crash,
an exception or a timeout in the child never takes the daemon down: the runner turns it
into a failure with a reason.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from runtime.config import DriftloopConfig
from runtime.intake.schema_state import resolved
from runtime.intake.text_columns import tokenizers
from runtime.promotion.evidence import NEW_DATA, Evidence, evidence_path, write_evidence
from runtime.promotion.evidence import score as score_set
from runtime.store import events as ev
from runtime.store.atomic import write_json_atomic
from runtime.store.db import Database
from runtime.store.events import EventLog
from runtime.store.rows import labelled_rows, recent_rows
from runtime.store.unit import Unit, golden_sets, load_unit, preprocessing, save_unit
from runtime.store.versions import Registry
from runtime.training import distributed_job
from strategies.base import Budget, Progress, RegressionLoss, TrainRequest, TrainResult
from strategies.registry import build as build_strategy
from strategies.tabular import TabularModel, widen_model


def job_seed(base: int, trigger_id: str) -> int:
    """A stable per-trigger seed (Python's hash() is salted per process)."""
    return (base * 1_000_003 + sum((i + 1) * ord(c) for i, c in enumerate(trigger_id))) % 2**31


def targets(y: np.ndarray, cfg: DriftloopConfig) -> np.ndarray:
    """What the model trains on: class positions, or the regression targets as they are."""
    return y if cfg.schema.numeric_label else class_positions(y, cfg.schema.class_values)


def regression_loss(cfg: DriftloopConfig, meta: dict[str, Any]) -> RegressionLoss | None:
    """The loss of a regression unit (errors in units of its target's SD), or None."""
    if cfg.task != "regression":
        return None
    scale = float((meta.get("target") or {}).get("std", 1.0))
    return RegressionLoss(cfg.regression.loss, cfg.regression.huber_delta, scale)


def class_positions(y: np.ndarray, classes: list[int]) -> np.ndarray:
    out = np.full(len(y), -1, dtype=np.int64)
    for pos, value in enumerate(classes):
        out[y == value] = pos
    return out


def checkpoint_dir(
    spec: dict[str, Any], x: torch.Tensor, y: torch.Tensor, config_hash: str | None = None
) -> Path | None:
    """The directory for this job's epoch checkpoints (``spec["checkpoint_dir"]``).

    The runner names it after the trigger, so a re-run of an interrupted retrain finds
    the checkpoint its first attempt left and the training loop resumes from it. A
    directory left by a different job under that name (another champion, other rows or
    labels, e.g. labels that arrived in between, another config) is emptied first: only
    the same job on the same training data resumes.
    """
    raw = spec.get("checkpoint_dir")
    if not raw:
        return None
    path = Path(raw)
    identity = {k: spec.get(k) for k in ("trigger_id", "champion", "onset", "upto", "config_hash")}
    if config_hash is not None:  # the distributed retrain's, the same at every N
        identity["config_hash"] = config_hash
    digest = hashlib.sha256(x.numpy().tobytes())
    digest.update(y.numpy().tobytes())
    identity["data_sha256"] = digest.hexdigest()
    marker = path / "job.json"
    if path.exists():
        try:
            same = json.loads(marker.read_text()) == identity
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    write_json_atomic(marker, identity)
    return path


@dataclass(frozen=True)
class _Rows:
    """The labelled rows a job trains on, split: ``train`` and ``hold`` (held out for the
    gate) are positions into ``seqs``/``x``/``y``; ``gold`` the held-out rows kept as the
    candidate's golden set (bounded by ``golden.max_rows``)."""

    seqs: np.ndarray
    x: np.ndarray
    y: np.ndarray  # class positions
    train: np.ndarray
    hold: np.ndarray
    gold: np.ndarray
    xt: torch.Tensor
    yt: torch.Tensor


def run_job(cfg: DriftloopConfig, spec: dict[str, Any]) -> dict[str, Any]:
    """The child's work: load, train, judge, write; returns the JSON result."""
    db = Database.for_state_dir(cfg.state_dir, cfg.database_url)
    events = EventLog(db)
    registry = Registry(db, cfg.state_dir / "models", events)
    champion, candidate = spec["champion"], spec["candidate"]
    onset, upto, trigger = int(spec["onset"]), int(spec["upto"]), spec["trigger_id"]
    seed = job_seed(cfg.retrain.seed, trigger)

    unit = load_unit(registry, cfg, champion, with_buffer=True)
    assert unit.buffer is not None
    rows = _load_rows(db, cfg, onset, upto, seed)
    _widen(db, cfg, unit, rows)
    progress = _progress_events(events, trigger, candidate, spec.get("pause_after_epoch_for_test"))
    model, result = _train(cfg, spec, unit, rows, seed, progress)
    evidence_sha, metrics = _judge(cfg, registry, unit, model, rows, candidate)
    train_info = _train_info(result, rows)
    meta = _meta(cfg, spec, unit, rows, metrics, train_info)
    for key in ("preprocessing", "target"):  # the unit's encodings carry over
        if key in unit.meta:
            meta[key] = unit.meta[key]
    _write(db, registry, cfg, spec, unit, model, rows, meta)
    db.dispose()
    return {
        "candidate": candidate,
        "metrics": metrics,
        "evidence": {"path": str(evidence_path(cfg.state_dir, candidate)), "sha256": evidence_sha},
        "train": train_info,
        "golden_index": meta["golden_index"],
    }


def least_rows(cfg: DriftloopConfig) -> int:
    """The fewest labelled rows a retrain learns from (``retrain.min_rows``, by default
    300 per class, 600 for a regression)."""
    if cfg.retrain.min_rows is not None:
        return cfg.retrain.min_rows
    return 600 if cfg.task == "regression" else 300 * len(cfg.schema.classes)


def _load_rows(db: Database, cfg: DriftloopConfig, onset: int, upto: int, seed: int) -> _Rows:
    """The labelled rows since the drift onset (at least :func:`least_rows` of the newest),
    split at random (``seed``) into training and held-out rows; fewer than two
    is an error (nothing to train on)."""
    nf = len(cfg.schema.features)
    seqs, x, y_raw = labelled_rows(db, nf, since=onset, upto=upto, limit=cfg.retrain.max_rows,
                                   numeric=cfg.schema.numeric_label)
    least = least_rows(cfg)
    if len(seqs) < least:  # too few since the onset: reach back
        seqs, x, y_raw = labelled_rows(db, nf, since=0, upto=upto,
                                       limit=min(least, cfg.retrain.max_rows),
                                       numeric=cfg.schema.numeric_label)
    y = targets(y_raw, cfg)
    if len(seqs) < 2:
        raise ValueError(f"only {len(seqs)} labelled rows since row {onset}: nothing to train on")
    perm = np.random.default_rng(seed).permutation(len(seqs))
    n_hold = max(1, round(len(seqs) * cfg.retrain.holdout_fraction))
    hold, train = np.sort(perm[:n_hold]), np.sort(perm[n_hold:])
    gold = np.sort(perm[: min(n_hold, cfg.golden.max_rows)])  # golden sets are bounded
    xt = torch.as_tensor(x[train], dtype=torch.float32)
    yt = torch.as_tensor(y[train], dtype=torch.float32 if y.dtype.kind == "f" else torch.int64)
    return _Rows(seqs, x, y, train, hold, gold, xt, yt)


def _widen(db: Database, cfg: DriftloopConfig, unit: Unit, rows: _Rows) -> None:
    """Grow the champion's vocabularies by the categories now frequent in the training
    rows (new slots, zero weights: the champion scores every row as before), so the
    candidate can learn them; the widened preprocessing goes into the candidate's meta."""
    old = preprocessing(unit.meta)
    if old is None or not isinstance(unit.model, TabularModel):
        return
    new = old.widen(rows.x[rows.train], resolved(db, cfg.schema)[1])
    if new.width == old.width:
        return
    unit.model = widen_model(unit.model, old, new)
    unit.meta = {**unit.meta, "preprocessing": new.to_json()}


def _progress_events(
    events: EventLog, trigger: str, candidate: str, pause_after: Any
) -> Callable[[Progress], None]:
    """The training loop's progress callback: one ``retrain.progress`` event per report.
    ``pause_after`` (an epoch) lets the tests interrupt a run after that epoch's checkpoint."""

    def progress(p: Progress) -> None:
        if pause_after is not None and p.epoch > int(pause_after):
            time.sleep(300)  # epoch pause_after's checkpoint is on disk; wait to be killed
        events.append(
            ev.RETRAIN_PROGRESS,
            ev.RetrainProgress(
                trigger_id=trigger,
                epoch=p.epoch,
                step=p.step,
                samples=p.samples,
                loss=round(p.loss, 6),
                seconds=round(p.seconds, 3),
                val_accuracy=p.val_accuracy,
            ),
            model_version=candidate,
        )

    return progress


def _train(
    cfg: DriftloopConfig,
    spec: dict[str, Any],
    unit: Unit,
    rows: _Rows,
    seed: int,
    progress: Callable[[Progress], None],
) -> tuple[nn.Module, TrainResult]:
    """A copy of the champion's model trained by the configured strategy (resuming from
    this job's checkpoint when one is left), in eval mode."""
    assert unit.buffer is not None
    model = copy.deepcopy(unit.model)
    d = cfg.retrain.distributed
    ckpt = checkpoint_dir(spec, rows.xt, rows.yt, None if d is None else _hash_for_any_n(cfg))
    if d is not None and d.active:  # workers launched by torch.distributed.run
        reg = regression_loss(cfg, unit.meta)
        job = {"config": spec["config"], "seed": seed, "meta": unit.meta,
               "device": cfg.retrain.device, "checkpoint": None if ckpt is None else str(ckpt),
               "regression": None if reg is None else dataclasses.asdict(reg)}
        result = distributed_job.train(d, job, model, rows.xt, rows.yt, unit.buffer, progress)
        model.eval()
        return model, result
    strategy = build_strategy(cfg.retrain.strategy)
    b = cfg.retrain.budget
    result = strategy.train(TrainRequest(
        model,
        rows.xt,
        rows.yt,
        buffer=unit.buffer,
        budget=Budget(epochs=b.epochs, steps=b.steps, seconds=b.seconds),
        seed=seed,
        progress=progress,
        device=cfg.retrain.torch_device,
        checkpoint=ckpt,
        regression=regression_loss(cfg, unit.meta),
    ))
    model.eval()
    return model, result


def _hash_for_any_n(cfg: DriftloopConfig) -> str:
    """The config's hash with ``retrain.distributed`` left out: a checkpoint resumes
    whatever number of processes wrote it (the loop's shards depend on the epoch only)."""
    retrain = cfg.retrain.model_copy(update={"distributed": None})
    return cfg.model_copy(update={"retrain": retrain}).config_hash()


def _judge(
    cfg: DriftloopConfig,
    registry: Registry,
    unit: Unit,
    model: nn.Module,
    rows: _Rows,
    candidate: str,
) -> tuple[str, dict[str, Any]]:
    """Score champion and candidate on the held-out rows and every golden set, write the
    evidence for the gate; returns its sha256 and the metrics summary."""
    # The gate judges per-row predictions of both models (a safetensors side file);
    # the accuracies in meta are a summary for people.
    hold = rows.hold
    sets = {
        NEW_DATA: score_set(
            NEW_DATA,
            unit.model,
            model,
            rows.x[hold],
            rows.y[hold],
            {
                "rows": len(hold),
                "first_row": int(rows.seqs[0]),
                "last_row": int(rows.seqs[-1]),
                "source": "held-out split of the retrain data",
            },
            cfg.task,
        )
    }
    for name, (gx, gy) in golden_sets(registry, unit.golden_index).items():
        provenance = registry.get(name).meta.get("golden_provenance", {})
        sets[name] = score_set(name, unit.model, model, gx, gy, provenance, cfg.task)
    classes = () if cfg.task == "regression" else tuple(cfg.schema.classes)
    evidence = Evidence(cfg.task, tuple(cfg.schema.features), classes, sets)
    evidence_sha = write_evidence(evidence_path(cfg.state_dir, candidate), evidence)
    summary = evidence.summary()
    return evidence_sha, {"holdout": summary["holdout"], "golden": summary["golden"]}


def _train_info(result: TrainResult, rows: _Rows) -> dict[str, Any]:
    """What the training did, for the candidate's meta and the job's result."""
    return {
        "samples": result.samples_processed,
        "steps": result.steps,
        "epochs": result.epochs,
        "seconds": round(result.seconds, 3),
        "final_loss": result.final_loss,
        "stopped_by": result.stopped_by,
        "resumed_from_epoch": int(result.extra.get("resumed_from_epoch", 0)),
        "device": str(result.extra.get("device", "cpu")),
        **{k: result.extra[k] for k in ("world_size", "backend") if k in result.extra},
        "rows_train": len(rows.train),
        "rows_holdout": len(rows.hold),
    }


def _meta(
    cfg: DriftloopConfig,
    spec: dict[str, Any],
    unit: Unit,
    rows: _Rows,
    metrics: dict[str, Any],
    train_info: dict[str, Any],
) -> dict[str, Any]:
    """The candidate version's meta: its data, strategy, metrics and golden sets."""
    first, last = int(rows.seqs[0]), int(rows.seqs[-1])
    return {
        "trigger_id": spec["trigger_id"],
        "data": {
            "since": int(spec["onset"]),
            "upto": int(spec["upto"]),
            "first_row": first,
            "last_row": last,
            "rows": len(rows.seqs),
        },
        "strategy": cfg.retrain.strategy.kind,
        "buffer_kind": cfg.retrain.buffer.kind,
        "config_hash": spec.get("config_hash", cfg.config_hash()),
        "metrics": metrics,
        "train": train_info,
        "golden_index": kept_golden([*unit.golden_index, spec["candidate"]], cfg),
        "golden_provenance": {
            "rows": len(rows.gold),
            "first_row": first,
            "last_row": last,
            "source": "held-out split of the retrain data",
        },
    }


def kept_golden(index: list[str], cfg: DriftloopConfig) -> list[str]:
    """The golden sets a new version keeps: the newest ``golden.max_sets`` of ``index``."""
    keep = cfg.golden.max_sets
    return index if keep is None else index[-keep:]


def _write(
    db: Database,
    registry: Registry,
    cfg: DriftloopConfig,
    spec: dict[str, Any],
    unit: Unit,
    model: nn.Module,
    rows: _Rows,
    meta: dict[str, Any],
) -> None:
    """Save the candidate unit: the trained model, the buffer with the training rows
    added, the recent rows as drift reference, and its held-out golden rows."""
    assert unit.buffer is not None
    unit.buffer.add(rows.xt, rows.yt)
    nf, onset, upto = len(cfg.schema.features), int(spec["onset"]), int(spec["upto"])
    _, reference = recent_rows(db, nf, cfg.retrain.reference_size, since=onset, upto=upto)
    save_unit(
        registry,
        spec["candidate"],
        model=model,
        buffer=unit.buffer,
        reference=reference,
        golden=(rows.x[rows.gold], rows.y[rows.gold]),
        meta=meta,
        parent=spec["champion"],
        calibrate=cfg.policy.estimate.calibration,
        tokenizers=tokenizers(cfg.schema),
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec_path, result_path = Path(args[0]), Path(args[1])
    try:
        spec = json.loads(spec_path.read_text())
        cfg = DriftloopConfig.model_validate(spec["config"])
        torch.set_num_threads(cfg.torch_threads)
        if spec.get("sleep_for_test"):  # lets the tests catch a child mid-run
            time.sleep(float(spec["sleep_for_test"]))
        if spec.get("crash_for_test"):  # lets the tests prove a dying child is survived
            os.kill(os.getpid(), signal.SIGKILL)
        out = run_job(cfg, spec)
        write_json_atomic(result_path, {"ok": True, **out})
        return 0
    except Exception as err:  # every failure becomes a reason in the result
        write_json_atomic(
            result_path,
            {
                "ok": False,
                "error": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc()[-4000:],
            },
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
