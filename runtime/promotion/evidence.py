"""The evidence the gate judges: per-row predictions of champion and candidate.

The retrain child scores both models on the new-data holdout and on every golden set and
writes one safetensors file (arrays) whose header metadata holds the JSON description
(set names, provenance, task, classes, features). The daemon reads it back after checking
the sha256 the child reported. Nothing is pickled.

Exceptions
----------
EvidenceError
    The file is missing, does not match its recorded sha256, is not readable, or its
    arrays disagree with its description (row counts, shapes).
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from runtime.store.atomic import write_bytes_atomic

__all__ = [
    "NEW_DATA",
    "EvalSet",
    "Evidence",
    "EvidenceError",
    "evidence_path",
    "read_evidence",
    "write_evidence",
]

F64 = npt.NDArray[np.float64]
NEW_DATA = "new_data"
FORMAT_VERSION = 1
Task = Literal["classification", "regression"]


class EvidenceError(Exception):
    """The evaluation evidence cannot be trusted or read; the message says why."""


@dataclass(frozen=True)
class EvalSet:
    """One evaluated set: labels, both models' predictions, features, provenance.

    ``y`` holds class positions (classification) or targets (regression);
    ``champion``/``candidate`` hold probabilities ``[n, k]`` or predictions ``[n]``;
    ``x`` holds the features ``[n, f]`` as stored (slices are defined on them);
    ``encoded`` the same rows as the model's own preprocessing encodes them (one-hot
    categories, standardised and imputed numbers), where nearest neighbours are found
    (None: a model without preprocessing, whose inputs are ``x`` itself).
    """

    name: str
    y: npt.NDArray[Any]
    champion: F64
    candidate: F64
    x: F64
    provenance: dict[str, Any] = field(default_factory=dict)
    encoded: F64 | None = None

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, mask: npt.NDArray[np.bool_]) -> EvalSet:
        return EvalSet(
            self.name,
            self.y[mask],
            self.champion[mask],
            self.candidate[mask],
            self.x[mask],
            self.provenance,
            None if self.encoded is None else self.encoded[mask],
        )


@dataclass(frozen=True)
class Evidence:
    """Everything the gate needs: ``sets`` has ``new_data`` and one entry per golden set."""

    task: Task
    features: tuple[str, ...]
    classes: tuple[int | str, ...]
    sets: dict[str, EvalSet]

    def summary(self) -> dict[str, Any]:
        """Accuracies (or MAE) as ``{"holdout": [champion, candidate, n], "golden": {...}}``."""
        from runtime.promotion.metrics import value

        metric = "accuracy" if self.task == "classification" else "mae"

        def triple(s: EvalSet) -> list[Any]:
            return [value(metric, s.y, s.champion), value(metric, s.y, s.candidate), len(s)]

        new = self.sets.get(NEW_DATA)
        return {
            "metric": metric,
            "holdout": triple(new) if new is not None else None,
            "golden": {k: triple(s) for k, s in self.sets.items() if k != NEW_DATA},
        }


def evidence_path(state_dir: Path, candidate: str) -> Path:
    """Where the retrain child leaves the evidence for ``candidate``."""
    return Path(state_dir) / "retrain" / f"{candidate}.evidence.safetensors"


def write_evidence(path: Path, evidence: Evidence) -> str:
    """Write ``evidence`` atomically; returns the file's sha256."""
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    described = []
    for i, s in enumerate(evidence.sets.values()):
        for part in ("y", "champion", "candidate", "x"):
            arrays[f"{i}.{part}"] = np.ascontiguousarray(getattr(s, part))
        if s.encoded is not None:
            arrays[f"{i}.encoded"] = np.ascontiguousarray(s.encoded)
        described.append({"name": s.name, "provenance": s.provenance})
    meta = {
        "version": FORMAT_VERSION,
        "task": evidence.task,
        "features": list(evidence.features),
        "classes": list(evidence.classes),
        "sets": described,
    }
    data = st_save(arrays, metadata={"evidence": json.dumps(meta)})
    write_bytes_atomic(Path(path), data)
    return hashlib.sha256(data).hexdigest()


def _header(data: bytes) -> dict[str, Any]:
    (size,) = struct.unpack("<Q", data[:8])
    header: dict[str, Any] = json.loads(data[8 : 8 + size])
    meta = header.get("__metadata__") or {}
    described: dict[str, Any] = json.loads(meta["evidence"])
    return described


def read_evidence(path: Path, sha256: str | None) -> Evidence:
    """Read and check the evidence file; EvidenceError says what is wrong."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise EvidenceError(f"the evaluation evidence {path.name} is missing") from None
    except OSError as exc:
        raise EvidenceError(f"the evaluation evidence {path.name} cannot be read ({exc})") from exc
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256:
        raise EvidenceError(
            f"the evaluation evidence {path.name} was changed after the retrain wrote it "
            f"(sha256 {digest[:12]}…, recorded {sha256[:12]}…)"
        )
    try:
        meta = _header(data)
        arrays = st_load(data)
    except Exception as exc:  # safetensors and json raise their own error types
        raise EvidenceError(f"the evaluation evidence {path.name} is not readable ({exc})") from exc
    if meta.get("version") != FORMAT_VERSION:
        raise EvidenceError(f"the evaluation evidence has unknown format {meta.get('version')!r}")
    sets: dict[str, EvalSet] = {}
    for i, d in enumerate(meta["sets"]):
        try:
            s = EvalSet(
                d["name"],
                arrays[f"{i}.y"],
                arrays[f"{i}.champion"].astype(np.float64),
                arrays[f"{i}.candidate"].astype(np.float64),
                arrays[f"{i}.x"].astype(np.float64),
                dict(d.get("provenance", {})),
                _optional(arrays, f"{i}.encoded"),
            )
        except KeyError as exc:
            raise EvidenceError(f"the evaluation evidence lacks the array {exc.args[0]}") from None
        sets[s.name] = s
    ev = Evidence(meta["task"], tuple(meta["features"]), tuple(meta["classes"]), sets)
    check_shapes(ev)
    return ev


def _embeddings(model: Any, x: Any) -> F64:
    """The text model's sentence embeddings of token-id rows ``x``, in batches."""
    import torch

    device = next(model.parameters()).device
    was = model.training
    model.eval()
    with torch.no_grad():
        out = [model.embed(x[i:i + 256].to(device)).cpu() for i in range(0, len(x), 256)]
    model.train(was)
    return torch.cat(out).numpy().astype(np.float64)


def _optional(arrays: dict[str, Any], key: str) -> F64 | None:
    """An array written only by some retrains (evidence from before it reads as None)."""
    return arrays[key].astype(np.float64) if key in arrays else None


def check_shapes(evidence: Evidence) -> None:
    """EvidenceError unless every set's arrays agree in rows and widths."""
    for s in evidence.sets.values():
        n = len(s.y)
        for part in ("champion", "candidate", "x", "encoded"):
            if getattr(s, part) is not None and len(getattr(s, part)) != n:
                raise EvidenceError(
                    f"set {s.name!r}: {part} has {len(getattr(s, part))} rows, labels have {n}"
                )
        if evidence.task == "classification" and (
            s.champion.ndim != 2 or s.champion.shape != s.candidate.shape
        ):
            raise EvidenceError(f"set {s.name!r}: probabilities must be [rows, classes] for both")


def from_mapping(task: Task, features: Any, classes: Any, sets: Mapping[str, EvalSet]) -> Evidence:
    """An :class:`Evidence` from parts, shapes checked."""
    ev = Evidence(task, tuple(features), tuple(classes), dict(sets))
    check_shapes(ev)
    return ev


def score(
    name: str,
    champion: Any,
    candidate: Any,
    x: F64,
    y: npt.NDArray[np.int64],
    provenance: dict[str, Any],
    task: Task = "classification",
) -> EvalSet:
    """Both models' class probabilities (regression: predicted values) on ``(x, y)`` as
    an :class:`EvalSet`, with the rows as the champion's preprocessing encodes them when it
    has one (the candidate's encodes old categories alike: a retrain only appends slots),
    or, for the text model, as the champion's sentence embeddings (token ids as numbers
    are no space to find similar sentences in)."""
    import torch

    from strategies.evaluation import predict_logits, predict_proba
    from strategies.tabular import TabularModel
    from strategies.text import TextClassifier

    xt = torch.as_tensor(x, dtype=torch.float32)
    encoded = None
    if isinstance(champion, TabularModel):
        with torch.no_grad():
            device = champion.encoder.fill.device
            encoded = champion.encoder(xt.to(device)).cpu().numpy().astype(np.float64)
    elif isinstance(champion, TextClassifier) and len(xt):
        encoded = _embeddings(champion, xt)
    if task == "regression":
        def predict(m: Any) -> F64:
            return predict_logits(m, xt).numpy().astype(np.float64).reshape(len(xt))
    else:
        def predict(m: Any) -> F64:
            return predict_proba(m, xt).numpy().astype(np.float64)
    return EvalSet(
        name,
        np.asarray(y, dtype=np.float64 if task == "regression" else np.int64),
        predict(champion),
        predict(candidate),
        np.asarray(x, dtype=np.float64),
        provenance,
        encoded,
    )
