"""The versioned unit: model weights, rehearsal buffer, reference window and golden set.

They are saved, promoted and rolled back together (one registry version). Each version
also carries the golden set of the distribution it was trained for (the held-out rows it
never trained on) and, in ``meta["golden_index"]``, the names of every golden set its
lineage answers for. Its probabilities are calibrated on its own golden set when it is
saved (:mod:`strategies.calibration`), kept in ``meta["calibration"]`` (JSON carrying its
own sha256, checked on load); a version saved before that reads as uncalibrated. A schema
with text columns saves each column's tokenizer (its JSON as ``tokenizer.safetensors``,
bytes, described with its sha256 in ``meta["tokenizer"]``); a version whose tokenizer is
not the one ingest uses is refused on load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from runtime.config import DriftloopConfig
from runtime.store.versions import IntegrityError, ModelVersion, Registry
from strategies import calibration, loss_model
from strategies.base import RehearsalBuffer
from strategies.evaluation import predict_logits
from strategies.models import build_model
from strategies.registry import build_buffer, restore_buffer
from strategies.tabular import Preprocessing, TabularModel
from strategies.text_tokenizer import SentenceTokenizer, for_columns

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass
class Unit:
    version: str
    model: nn.Module
    buffer: RehearsalBuffer | None  # None when loaded for serving only
    reference: F64
    meta: dict[str, Any]
    tokenizers: dict[str, SentenceTokenizer] = field(default_factory=dict)

    @property
    def golden_index(self) -> list[str]:
        return list(self.meta.get("golden_index", []))

    @property
    def calibration(self) -> calibration.Calibration:
        """The calibration fitted when the version was made (identity for older ones)."""
        return calibration_of(self.version, self.meta)

    @property
    def loss_model(self) -> loss_model.LossModel:
        """A regression version's loss model (its expected absolute error from its inputs,
        fitted on its golden set; unfitted for a classifier or an older version)."""
        return loss_model_of(self.version, self.meta)


def loss_model_of(version: str, meta: dict[str, Any]) -> loss_model.LossModel:
    """``meta``'s loss model, checked against its sha256 (IntegrityError if it differs)."""
    try:
        return loss_model.LossModel.from_json(meta.get("loss_model"))
    except (ValueError, TypeError, KeyError) as err:
        raise IntegrityError(f"model {version}: meta loss model is unreadable ({err})") from None


def calibration_of(version: str, meta: dict[str, Any]) -> calibration.Calibration:
    """``meta``'s calibration, checked against its sha256 (IntegrityError if it differs)."""
    try:
        return calibration.Calibration.from_json(meta.get("calibration"))
    except (ValueError, TypeError, KeyError) as err:
        raise IntegrityError(f"model {version}: meta calibration is unreadable ({err})") from None


def new_model(
    cfg: DriftloopConfig, seed: int | None = None, prep: Preprocessing | None = None,
    target: tuple[float, float] | None = None,
) -> nn.Module:
    """The config's model; with ``prep``, wrapped to encode raw rows first (the inner
    model then takes ``prep.width`` inputs). ``task: regression``: one output, in target
    units (``target`` is the target's mean and SD, see :func:`target_scale`)."""
    regression = cfg.task == "regression"
    n_out = 1 if regression else len(cfg.schema.classes)
    scale = (target or (0.0, 1.0)) if regression else None
    if prep is None:
        return build_model(cfg.model, len(cfg.schema.features), n_out, seed=seed, target=scale)
    return TabularModel(prep, build_model(cfg.model, prep.width, n_out, seed=seed, target=scale))


def target_scale(meta: dict[str, Any]) -> tuple[float, float] | None:
    """A regression version's target standardisation (``meta["target"]``, JSON), or None."""
    t = meta.get("target")
    return None if t is None else (float(t["mean"]), float(t["std"]))


def fit_target(y: F64) -> dict[str, float]:
    """The target standardisation of training targets ``y``, as saved in the meta."""
    sd = float(np.std(y)) if len(y) > 1 else 1.0
    return {"mean": float(np.mean(y)) if len(y) else 0.0, "std": sd if sd > 1e-8 else 1.0}


def preprocessing(meta: dict[str, Any]) -> Preprocessing | None:
    """The version's saved preprocessing (``None``: a version written before it
    existed, or a schema of plain numbers: rows go to the model as they are)."""
    data = meta.get("preprocessing")
    return None if data is None else Preprocessing.from_json(data)


def new_buffer(cfg: DriftloopConfig) -> RehearsalBuffer:
    return build_buffer(cfg.retrain.buffer, seed=cfg.seed)


def load_unit(
    registry: Registry, cfg: DriftloopConfig, version: str, *, with_buffer: bool = False
) -> Unit:
    """Load and check (sha256) a version, rebuilding the model from the config.

    The rehearsal buffer is restored only when asked: serving needs the model and the
    reference window, and the buffer's engine (avalanche) takes seconds to import.
    """
    loaded = registry.load(version)
    meta = loaded.version.meta
    model = new_model(cfg, prep=preprocessing(meta), target=target_scale(meta))
    model.load_state_dict(loaded.tensors["model"])
    model.eval()
    calibration_of(version, meta)  # a tampered calibration fails the load like a file
    texts = tokenizers_of(version, cfg, meta, loaded.tensors.get("tokenizer", {}))
    loss_model_of(version, meta)
    buffer = None
    if with_buffer:
        buffer = _config_buffer(cfg, loaded.tensors.get("buffer", {}), meta.get("buffer", {}))
    ref = loaded.tensors.get("reference", {}).get("x")
    reference = (
        ref.numpy().astype(np.float64)
        if ref is not None
        else np.zeros((0, len(cfg.schema.features)))
    )
    return Unit(version=version, model=model, buffer=buffer, reference=reference, meta=meta,
                tokenizers=texts)


def tokenizers_of(
    version: str, cfg: DriftloopConfig, meta: dict[str, Any], saved: Mapping[str, torch.Tensor]
) -> dict[str, SentenceTokenizer]:
    """The version's saved tokenizer of each text column, checked against its recorded
    sha256 and against the tokenizer ingest uses (IntegrityError, one line, if either
    differs: its token ids would mean other words)."""
    out: dict[str, SentenceTokenizer] = {}
    for name, current in for_columns(cfg.schema.text_columns).items():
        record = (meta.get("tokenizer") or {}).get(name)
        if record is None or name not in saved:
            raise IntegrityError(f"model {version}: no tokenizer saved for text column {name!r}")
        data = saved[name].numpy().tobytes()
        tok = SentenceTokenizer.from_bytes(data, int(record["max_length"]))
        if tok.sha256 != record.get("sha256"):
            raise IntegrityError(f"model {version}: tokenizer of {name!r} does not match its "
                                 f"recorded sha256")
        if tok != current:
            raise IntegrityError(
                f"model {version}: its tokenizer of {name!r} ({tok.max_length} tokens, sha256 "
                f"{tok.sha256[:12]}) is not the one ingest uses ({current.max_length} tokens, "
                f"{current.sha256[:12]}): the config's max_length or the encoder package changed"
            )
        out[name] = tok
    return out


def _config_buffer(
    cfg: DriftloopConfig, tensors: dict[str, torch.Tensor], saved: dict[str, Any]
) -> RehearsalBuffer:
    """The saved buffer as the config's kind: restored as it was when the kind is the
    same (its capacity follows the config); when ``retrain.buffer.kind`` changed since it
    was saved, a new buffer of that kind offered every saved row (and logit), so a
    changed config re-samples the memory instead of failing every retrain."""
    buffer = new_buffer(cfg)
    if not saved or saved.get("kind") == cfg.retrain.buffer.kind:
        buffer.load(tensors, saved)
        return buffer
    old = restore_buffer(tensors, saved)
    x, y = old.tensors()
    if len(y):
        buffer.add(x, y, old.logits())
    return buffer


def save_unit(
    registry: Registry,
    version: str,
    *,
    model: nn.Module,
    buffer: RehearsalBuffer,
    reference: F64,
    golden: tuple[F64, I64],
    meta: dict[str, Any],
    parent: str | None,
    calibrate: calibration.Method = "temperature",
    tokenizers: Mapping[str, SentenceTokenizer] | None = None,
) -> ModelVersion:
    """Write a complete unit as a candidate version, its probabilities calibrated on its
    golden set by ``calibrate`` (a regression unit: its loss model fitted there); with
    ``tokenizers``, the text columns' tokenizers."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    golden_dtype = torch.float64 if golden[1].dtype.kind == "f" else torch.int64  # targets
    tensors = {
        "model": state,
        "buffer": {k: v.contiguous() for k, v in buffer.state_tensors().items()},
        "reference": {"x": torch.as_tensor(np.ascontiguousarray(reference), dtype=torch.float64)},
        "golden": {
            "x": torch.as_tensor(np.ascontiguousarray(golden[0]), dtype=torch.float64),
            "y": torch.as_tensor(np.ascontiguousarray(golden[1]), dtype=golden_dtype),
        },
    }
    gold_x = torch.as_tensor(np.ascontiguousarray(golden[0]), dtype=torch.float32)
    logits = predict_logits(model, gold_x).numpy().astype(np.float64)
    fitted = calibration.fit(logits, np.asarray(golden[1], dtype=np.int64), calibrate)
    full_meta = {**meta, "buffer": buffer.state_meta(), "calibration": fitted.to_json()}
    if tokenizers:
        tensors["tokenizer"] = {
            name: torch.frombuffer(bytearray(t.spec.encode("utf-8")), dtype=torch.uint8)
            for name, t in tokenizers.items()
        }
        full_meta["tokenizer"] = {name: t.describe() for name, t in tokenizers.items()}
    if golden[1].dtype.kind == "f":  # regression targets: the expected error's model
        lm = loss_model.fit(golden[0], logits.reshape(-1), golden[1].astype(np.float64))
        full_meta["loss_model"] = lm.to_json()
    return registry.save(version, tensors=tensors, meta=full_meta, parent=parent)


def golden_sets(registry: Registry, names: list[str]) -> dict[str, tuple[F64, I64]]:
    """The golden sets named (each stored with the version that introduced it).

    A missing or corrupt golden set is left out; the gate then fails closed on it.
    """
    out: dict[str, tuple[F64, I64]] = {}
    for name in names:
        try:
            g = registry.load(name).tensors["golden"]
        except Exception:
            continue
        y = g["y"].numpy()  # int64 classes, or float64 regression targets
        out[name] = (g["x"].numpy().astype(np.float64), y if y.dtype.kind == "f" else
                     y.astype(np.int64))
    return out
