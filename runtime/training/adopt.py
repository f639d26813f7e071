"""Adopting a model trained elsewhere as v1 (``driftloop adopt``).

The weights are read as data, never as code: a safetensors file, or a PyTorch state dict
read with ``torch.load(weights_only=True)``. They are loaded into the module the config
builds (``model:``: a built-in model or the user's factory) after checking every key and
shape. The labelled rows are stored like ``bootstrap.data`` and split as the bootstrap
splits them (:func:`runtime.training.bootstrap.split_rows`): the golden split becomes v1's
golden set, the training split its first rehearsal buffer, the last rows its reference
window; v1's accuracy (``task: regression``: MAE and RMSE) on the golden and validation
splits is measured and recorded. v1's
lineage says ``adopted`` with the weight file's sha256. From then on the loop treats v1
like any other version.

Exceptions
----------
AdoptError
    One line naming what is wrong: the file's format, the first bad key and both
    shapes, the rows, or a champion already there.
"""

from __future__ import annotations

import hashlib
import pickle
import struct
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from runtime.config import DriftloopConfig
from runtime.intake.directory_source import read_file
from runtime.intake.ingest import Ingestor
from runtime.intake.text_columns import tokenizers
from runtime.store import events as ev
from runtime.store.db import Database
from runtime.store.events import EventLog
from runtime.store.rows import labelled_rows, last_seq
from runtime.store.unit import new_buffer, new_model, save_unit
from runtime.store.versions import Registry
from runtime.training.bootstrap import scores, split_rows
from runtime.training.retrain_job import targets

__all__ = ["AdoptError", "Weights", "adopt", "check_state", "read_weights"]

_ZIP = b"PK\x03\x04"
_TARGET_KEYS = ("target_mean", "target_std")  # a regression MLP's output scale


class AdoptError(ValueError):
    """Weights or rows that cannot become v1; the message is one line."""


@dataclass(frozen=True)
class Weights:
    """A state dict read from ``path`` with the file's sha256 and its format."""

    path: Path
    state: dict[str, torch.Tensor]
    sha256: str
    format: str  # "safetensors" or "torch state dict"
    bytes: int


def read_weights(path: Path) -> Weights:
    """Read a safetensors file or a ``torch.save``'d state dict (``weights_only=True``).

    Raises
    ------
    AdoptError
        Missing or unreadable file, a pickled object (a whole module, a checkpoint
        holding more than tensors), a truncated file, or anything else.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AdoptError(f"--weights: no such file {path}") from None
    except OSError as err:
        raise AdoptError(f"--weights: cannot read {path} ({err.strerror})") from None
    digest = hashlib.sha256(data).hexdigest()
    if _looks_like_safetensors(data) or path.suffix == ".safetensors":
        state, fmt = _safetensors(path, data), "safetensors"
    else:
        state, fmt = _torch_state(path, data), "torch state dict"
    if not state:
        raise AdoptError(f"--weights: {path} holds no tensors")
    return Weights(path=path, state=state, sha256=digest, format=fmt, bytes=len(data))


def _looks_like_safetensors(data: bytes) -> bool:
    if len(data) < 10:
        return False
    (n,) = struct.unpack("<Q", data[:8])
    return 0 < n < len(data) and data[8:9] == b"{"


def _safetensors(path: Path, data: bytes) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    try:
        return dict(load(data))
    except Exception as err:  # safetensors raises its own error types
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise AdoptError(
            f"--weights: {path} is not a readable safetensors file (truncated?): {detail}"
        ) from None


def _torch_state(path: Path, data: bytes) -> dict[str, torch.Tensor]:
    if not data.startswith(_ZIP) and not data[:1] == b"\x80":
        raise AdoptError(
            f"--weights: {path} is neither a safetensors file nor a torch.save'd state dict"
        )
    if data.startswith(_ZIP):
        try:
            zipfile.ZipFile(path).testzip()
        except (zipfile.BadZipFile, OSError, EOFError):
            raise AdoptError(
                f"--weights: {path} is a truncated or damaged torch.save file"
            ) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise AdoptError(
            f"--weights: {path} holds pickled Python objects, not only tensors (a whole "
            "module?); save model.state_dict() with torch.save, or as safetensors"
        ) from None
    except Exception as err:
        raise AdoptError(
            f"--weights: {path} cannot be read as a torch.save'd state dict (truncated?): "
            f"{type(err).__name__}"
        ) from None
    if not isinstance(obj, Mapping):
        raise AdoptError(
            f"--weights: {path} holds a {type(obj).__name__}, not a state dict "
            "(save model.state_dict())"
        )
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        keys = ", ".join(sorted(str(k) for k in obj)[:5])
        raise AdoptError(
            f"--weights: {path} is a dict whose {str(bad[0])!r} is not a tensor (keys: {keys}); "
            "give the model's state dict itself (e.g. checkpoint['model'])"
        )
    return dict(obj)


def check_state(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Every key of ``model``'s state dict is in ``state`` with the same shape, and no more.

    Raises
    ------
    AdoptError
        Naming the first bad key (in the module's order) and both shapes.
    """
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise AdoptError(
                f"weights do not fit the configured model: {key!r} "
                f"{list(tensor.shape)} is missing from the file"
            )
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise AdoptError(
                f"weights do not fit the configured model: {key!r} has shape "
                f"{list(state[key].shape)} in the file, the model's is {list(tensor.shape)}"
            )
    extra = [k for k in state if k not in expected]
    if extra:
        raise AdoptError(
            f"weights do not fit the configured model: the file has {extra[0]!r} "
            f"{list(state[extra[0]].shape)}, which the model does not"
            + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else "")
        )


def adopt(
    cfg: DriftloopConfig,
    db: Database,
    events: EventLog,
    registry: Registry,
    weights: Weights,
    data: Path,
    *,
    report: Callable[[str], None] = lambda _: None,
) -> str:
    """Make ``weights`` v1 with the labelled rows of ``data``; returns ``"v1"``."""
    existing = registry.champion()
    if existing is not None or registry.list():
        raise AdoptError(
            f"{cfg.state_dir} already has model versions (champion {existing}); "
            "adopt makes the first model only"
        )
    regression = cfg.task == "regression"
    model = new_model(cfg, seed=cfg.seed, target=(0.0, 1.0) if regression else None)
    state = _with_target(model, weights.state)
    check_state(model, state)
    model.load_state_dict(state)
    model.eval()
    seqs, x, y_raw = _store_rows(cfg, db, events, data)
    y = targets(y_raw, cfg)
    split = split_rows(cfg, len(y))  # _store_rows made sure of 10 rows
    xs = torch.as_tensor(x, dtype=torch.float32)
    ys = torch.as_tensor(y, dtype=torch.float32 if regression else torch.int64)
    with torch.no_grad():
        metrics = scores(cfg, model, (xs[split.val], ys[split.val]),
                         (xs[split.gold], ys[split.gold]), ys[split.train])
    metrics.update(golden_rows=len(split.gold), val_rows=len(split.val),
                   train_rows=len(split.train))
    name = "mae" if regression else "accuracy"
    report(
        f"adopt: {weights.path.name} ({weights.format}, sha256 {weights.sha256[:12]}…) as v1: "
        f"golden {name} {metrics[f'golden_{name}']:.4f} on {len(split.gold)} rows, validation "
        f"{metrics[f'val_{name}']:.4f} on {len(split.val)}"
    )
    buffer = new_buffer(cfg)
    buffer.add(xs[split.train], ys[split.train])
    first, last = int(seqs[0]), int(seqs[-1])
    source = f"adopt --data {data}"
    lineage = {"file": str(weights.path), "sha256": weights.sha256, "format": weights.format,
               "bytes": weights.bytes}
    meta: dict[str, Any] = {
        "trigger_id": "adopt",
        "data": {"first_row": first, "last_row": last, "rows": len(y), "source": source},
        "strategy": "adopted", "adopted": lineage, "config_hash": cfg.config_hash(),
        "metrics": metrics, "golden_index": ["v1"], **_target_meta(model),
        "golden_provenance": {"rows": len(split.gold), "first_row": first, "last_row": last,
                              "source": f"held-out split of the adopted model's rows ({data})"},
    }
    save_unit(registry, "v1", model=model, buffer=buffer,
              reference=x[-cfg.retrain.reference_size:], golden=(x[split.gold], y[split.gold]),
              meta=meta, parent=None,
              calibrate=cfg.policy.estimate.calibration,
              tokenizers=tokenizers(cfg.schema))
    registry.promote("v1", ev.ModelPromoted(reason="adopted", metrics=metrics, adopted=lineage))
    return "v1"


def _with_target(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A regression model's weights with the output scale the built-in MLP keeps as
    buffers: a file without them (a model that outputs target units itself) gets the
    identity (mean 0, SD 1)."""
    own = model.state_dict()
    extra = {k: own[k].clone() for k in _TARGET_KEYS if k in own and k not in state}
    return {**state, **extra}


def _target_meta(model: nn.Module) -> dict[str, Any]:
    """The unit's ``target`` (see :func:`runtime.store.unit.target_scale`), from the
    adopted output scale; nothing for a classifier."""
    own = model.state_dict()
    if not all(k in own for k in _TARGET_KEYS):
        return {}
    mean, std = (float(own[k]) for k in _TARGET_KEYS)
    return {"target": {"mean": mean, "std": std}}


def _store_rows(
    cfg: DriftloopConfig, db: Database, events: EventLog, data: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ingest ``data`` (quarantining bad rows, as the daemon does) and return its labelled
    rows in order."""
    if not data.is_file():
        raise AdoptError(f"--data: no such file {data}")
    batch = read_file(data, cfg.schema)
    if batch.read_error is not None:
        raise AdoptError(f"--data {data}: {batch.read_error}")
    before = last_seq(db)
    acc = Ingestor(db, cfg.schema, events).ingest(batch)
    seqs, x, y = labelled_rows(db, len(cfg.schema.features), since=before + 1,
                               numeric=cfg.schema.numeric_label)
    if len(seqs) < 10:
        raise AdoptError(
            f"--data {data}: {len(seqs)} labelled rows stored ({acc.rejected} rejected, "
            f"{acc.duplicates} already stored); v1's golden set and buffer need at least 10"
        )
    return seqs, x, y
