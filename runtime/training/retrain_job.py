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
import hashlib
import json
import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runtime.config import DriftloopConfig
from runtime.promotion.evidence import NEW_DATA, Evidence, evidence_path, write_evidence
from runtime.promotion.evidence import score as score_set
from runtime.store import events as ev
from runtime.store.atomic import write_json_atomic
from runtime.store.db import Database
from runtime.store.events import EventLog
from runtime.store.rows import labelled_rows, recent_rows
from runtime.store.unit import golden_sets, load_unit, save_unit
from runtime.store.versions import Registry
from strategies.base import Budget, Progress, TrainRequest
from strategies.registry import build as build_strategy


def job_seed(base: int, trigger_id: str) -> int:
    """A stable per-trigger seed (Python's hash() is salted per process)."""
    return (base * 1_000_003 + sum((i + 1) * ord(c) for i, c in enumerate(trigger_id))) % 2**31


def class_positions(y: np.ndarray, classes: list[int]) -> np.ndarray:
    out = np.full(len(y), -1, dtype=np.int64)
    for pos, value in enumerate(classes):
        out[y == value] = pos
    return out


def checkpoint_dir(spec: dict[str, Any], x: torch.Tensor, y: torch.Tensor) -> Path | None:
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


def run_job(cfg: DriftloopConfig, spec: dict[str, Any]) -> dict[str, Any]:
    """The child's work; returns the JSON result."""
    db = Database.for_state_dir(cfg.state_dir, cfg.database_url)
    events = EventLog(db)
    registry = Registry(db, cfg.state_dir / "models", events)
    champion, candidate = spec["champion"], spec["candidate"]
    onset, upto, trigger = int(spec["onset"]), int(spec["upto"]), spec["trigger_id"]
    seed = job_seed(cfg.retrain.seed, trigger)
    nf = len(cfg.schema.features)

    unit = load_unit(registry, cfg, champion, with_buffer=True)
    assert unit.buffer is not None
    seqs, x, y_raw = labelled_rows(db, nf, since=onset, upto=upto, limit=cfg.retrain.max_rows)
    y = class_positions(y_raw, cfg.schema.classes)
    if len(seqs) < 2:
        raise ValueError(f"only {len(seqs)} labelled rows since row {onset}: nothing to train on")
    perm = np.random.default_rng(seed).permutation(len(seqs))
    n_hold = max(1, round(len(seqs) * cfg.retrain.holdout_fraction))
    hold, train = np.sort(perm[:n_hold]), np.sort(perm[n_hold:])
    xt = torch.as_tensor(x[train], dtype=torch.float32)
    yt = torch.as_tensor(y[train], dtype=torch.int64)

    pause_after = spec.get("pause_after_epoch_for_test")  # lets the tests interrupt a run

    def progress(p: Progress) -> None:
        if pause_after is not None and p.epoch > int(pause_after):
            time.sleep(300)  # epoch pause_after's checkpoint is on disk; wait to be killed
        events.append(
            ev.RETRAIN_PROGRESS,
            {
                "trigger_id": trigger,
                "epoch": p.epoch,
                "step": p.step,
                "samples": p.samples,
                "loss": round(p.loss, 6),
                "seconds": round(p.seconds, 3),
                "val_accuracy": p.val_accuracy,
            },
            model_version=candidate,
        )

    model = copy.deepcopy(unit.model)
    strategy = build_strategy(cfg.retrain.strategy)
    b = cfg.retrain.budget
    result = strategy.train(TrainRequest(
        model,
        xt,
        yt,
        buffer=unit.buffer,
        budget=Budget(epochs=b.epochs, steps=b.steps, seconds=b.seconds),
        seed=seed,
        progress=progress,
        device=cfg.retrain.torch_device,
        checkpoint=checkpoint_dir(spec, xt, yt),
    ))
    model.eval()

    # The gate judges per-row predictions of both models (a safetensors side file);
    # the accuracies in meta are a summary for people.
    sets = {
        NEW_DATA: score_set(
            NEW_DATA,
            unit.model,
            model,
            x[hold],
            y[hold],
            {
                "rows": len(hold),
                "first_row": int(seqs[0]),
                "last_row": int(seqs[-1]),
                "source": "held-out split of the retrain data",
            },
        )
    }
    for name, (gx, gy) in golden_sets(registry, unit.golden_index).items():
        provenance = registry.get(name).meta.get("golden_provenance", {})
        sets[name] = score_set(name, unit.model, model, gx, gy, provenance)
    evidence = Evidence(
        "classification", tuple(cfg.schema.features), tuple(cfg.schema.classes), sets
    )
    evidence_sha = write_evidence(evidence_path(cfg.state_dir, candidate), evidence)
    summary = evidence.summary()
    metrics = {"holdout": summary["holdout"], "golden": summary["golden"]}
    gold = np.sort(perm[: min(n_hold, cfg.golden.max_rows)])  # golden sets are bounded
    unit.buffer.add(xt, yt)
    _, reference = recent_rows(db, nf, cfg.retrain.reference_size, since=onset, upto=upto)
    train_info = {
        "samples": result.samples_processed,
        "steps": result.steps,
        "epochs": result.epochs,
        "seconds": round(result.seconds, 3),
        "final_loss": result.final_loss,
        "stopped_by": result.stopped_by,
        "resumed_from_epoch": int(result.extra.get("resumed_from_epoch", 0)),
        "device": str(result.extra.get("device", "cpu")),
        "rows_train": len(train),
        "rows_holdout": len(hold),
    }
    meta = {
        "trigger_id": trigger,
        "data": {
            "since": onset,
            "upto": upto,
            "first_row": int(seqs[0]),
            "last_row": int(seqs[-1]),
            "rows": len(seqs),
        },
        "strategy": cfg.retrain.strategy.kind,
        "buffer_kind": cfg.retrain.buffer.kind,
        "config_hash": spec.get("config_hash", cfg.config_hash()),
        "metrics": metrics,
        "train": train_info,
        "golden_index": [*unit.golden_index, candidate],
        "golden_provenance": {
            "rows": len(gold),
            "first_row": int(seqs[0]),
            "last_row": int(seqs[-1]),
            "source": "held-out split of the retrain data",
        },
    }
    save_unit(
        registry,
        candidate,
        model=model,
        buffer=unit.buffer,
        reference=reference,
        golden=(x[gold], y[gold]),
        meta=meta,
        parent=champion,
    )
    db.dispose()
    return {
        "candidate": candidate,
        "metrics": metrics,
        "evidence": {"path": str(evidence_path(cfg.state_dir, candidate)), "sha256": evidence_sha},
        "train": train_info,
        "golden_index": meta["golden_index"],
    }


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
