"""The training loop's epoch checkpoint: safetensors for tensors, JSON for the rest.

A checkpoint is two files in a directory: ``checkpoint.safetensors`` (model weights,
best-epoch weights, optimizer state tensors, RNG states as byte tensors, the averaged
weights of ``adapt.ema_decay``) and
``checkpoint.json`` (the loop's :class:`LoopState`, optimizer hyper-parameters, the
run's fingerprint and the sha256 of the tensor file). The JSON is written last, so a crash
between the two writes leaves the previous checkpoint's JSON pointing at a tensor file
whose digest no longer matches, and the checkpoint is ignored rather than half-loaded.
Both writes are atomic (temporary file, fsync, rename). Nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from strategies.base import Progress

VERSION = 1
TENSORS = "checkpoint.safetensors"
META = "checkpoint.json"


@dataclass(slots=True)
class LoopState:
    """The training loop's counters: what the loop updates as it trains, what a
    checkpoint saves whole and what a resumed run starts from."""

    epochs: int = 0
    """Completed epochs."""
    step: int = 0
    samples: int = 0
    """Rows through training steps, new and rehearsal."""
    new_samples: int = 0
    loss: float = math.nan
    """Mean loss of the last epoch (complete or not)."""
    stopped_by: str | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    """Epochs since the best validation accuracy (for ``patience``)."""
    best_acc: float = -math.inf
    weights_are_best: bool = False
    """The model's weights are the best epoch's (no step since it was validated)."""
    history: list[Progress] = field(default_factory=list)
    seconds: float = 0.0
    """Time trained when the state was saved."""

    def to_json(self) -> dict[str, Any]:
        """A JSON object (``best_acc`` ``None`` while no epoch was validated)."""
        out = asdict(self)
        out["best_acc"] = None if self.best_acc == -math.inf else self.best_acc
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> LoopState:
        """The state :meth:`to_json` wrote.

        Raises
        ------
        ValueError
            ``obj`` lacks a field or has one this version does not know.
        """
        try:
            return cls(**{
                **obj,
                "history": [Progress(**p) for p in obj["history"]],
                "best_acc": -math.inf if obj["best_acc"] is None else obj["best_acc"],
            })
        except (KeyError, TypeError) as err:
            raise ValueError(f"checkpoint loop state: {err}") from None


@dataclass(frozen=True)
class Saved:
    """A loaded checkpoint."""

    model: dict[str, torch.Tensor]
    best: dict[str, torch.Tensor] | None
    optimizer: dict[str, Any]
    rng: dict[str, torch.Tensor]
    state: LoopState
    ema: list[torch.Tensor] | None = None
    """The averaged weights (``adapt.ema_decay``), in the optimizer's parameter order."""


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _plain(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu").clone().contiguous()


def _optimizer_split(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt/{pid}/{key}"] = _plain(value)
            else:
                scalars.setdefault(str(pid), {})[key] = value
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()}
              for g in state["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _optimizer_join(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, t in tensors.items():
        if name.startswith("opt/"):
            _, pid, key = name.split("/", 2)
            state.setdefault(int(pid), {})[key] = t
    for pid, entries in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(entries)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def save(
    directory: Path,
    *,
    fingerprint: dict[str, Any],
    model: dict[str, torch.Tensor],
    best: dict[str, torch.Tensor] | None,
    optimizer: dict[str, Any],
    rng: dict[str, torch.Tensor],
    state: LoopState,
    ema: list[torch.Tensor] | None = None,
) -> None:
    """Write the checkpoint of the epoch just finished (replacing the previous one)."""
    directory.mkdir(parents=True, exist_ok=True)
    opt_tensors, opt_meta = _optimizer_split(optimizer)
    tensors = {
        **{f"model/{k}": _plain(v) for k, v in model.items()},
        **({} if best is None else {f"best/{k}": _plain(v) for k, v in best.items()}),
        **opt_tensors,
        **{f"rng/{k}": _plain(v) for k, v in rng.items()},
        **({} if ema is None else {f"ema/{i}": _plain(v) for i, v in enumerate(ema)}),
    }
    blob = st_save(tensors)
    _write_atomic(directory / TENSORS, blob)
    meta = {
        "version": VERSION,
        "fingerprint": fingerprint,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "has_best": best is not None,
        "ema": None if ema is None else len(ema),
        "optimizer": opt_meta,
        "loop": state.to_json(),
    }
    _write_atomic(directory / META, json.dumps(meta, sort_keys=True).encode())


def load(directory: Path, fingerprint: dict[str, Any]) -> Saved | None:
    """The checkpoint in ``directory``, or ``None`` when there is none (or a torn one).

    Raises
    ------
    ValueError
        The checkpoint belongs to a different run (its fingerprint differs) or to an
        unknown format version.
    """
    meta_path, tensor_path = directory / META, directory / TENSORS
    if not meta_path.exists() or not tensor_path.exists():
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("version") != VERSION:
        raise ValueError(f"checkpoint {directory}: format version {meta.get('version')!r}")
    blob = tensor_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != meta["sha256"]:
        return None
    saved_fp = meta["fingerprint"]
    if saved_fp != json.loads(json.dumps(fingerprint)):
        diff = sorted(k for k in {*saved_fp, *fingerprint} if saved_fp.get(k) != fingerprint.get(k))
        raise ValueError(
            f"checkpoint {directory} belongs to another run ({', '.join(diff)} differ)"
        )
    tensors = st_load(blob)

    def group(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    return Saved(
        model=group("model/"),
        best=group("best/") if meta["has_best"] else None,
        optimizer=_optimizer_join(tensors, meta["optimizer"]),
        rng=group("rng/"),
        state=LoopState.from_json(meta["loop"]),
        ema=None if meta.get("ema") is None else [tensors[f"ema/{i}"] for i in range(meta["ema"])],
    )
