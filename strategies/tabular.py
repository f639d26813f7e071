"""Preprocessing for mixed tables, owned by the versioned unit, and the model that applies it.

Rows reach the model as a float matrix, one column per feature: numbers as they are,
booleans as 0/1, a category as its :func:`category_code` (a 24-bit hash of its text,
exact in float32, so the same string is the same number in every process), NaN where a
value is missing. :class:`Preprocessing` is learned from a version's training rows:
per categorical column a vocabulary (categories seen at least ``min_count`` times) with
an ``unknown`` bucket, per numeric column a mean and standard deviation, per column the
fill value (median or mode) and whether a missing-indicator input is added. It is saved
as JSON beside the weights; :class:`TabularModel` applies it inside ``forward``, so every
caller of the model (monitor, retrain, gate, export, ``/v1/predict``) encodes alike.

The encoded input is a list of slots (a standardised number, one category's one-hot
input, a column's unknown bucket, a missing indicator). :meth:`Preprocessing.widen`
appends slots for categories that became frequent, and :func:`widen_model` grows the
first linear layer with zero weights for them, so rows of old categories encode and
score exactly as before.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

F64 = npt.NDArray[np.float64]
CODE_BITS = 24


def category_code(value: object) -> float:
    """The number a category is stored as: a 24-bit hash of its trimmed text (an integer
    category ``3`` and the text ``"3"`` are one category). 24 bits are exact in float32;
    two categories of one column share a code with probability about n²/2²⁵."""
    text = str(value).strip()
    if isinstance(value, float) and value.is_integer():
        text = str(int(value))
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    return float(int.from_bytes(digest[:3], "big"))


def infer_type(values: list[object]) -> str:
    """``categorical`` when most non-blank values are not numbers, else ``numeric``."""
    seen = [v for v in values if v is not None and str(v).strip() not in ("", "nan", "NaN")]
    if not seen:
        return "numeric"
    words = 0
    for v in seen:
        if isinstance(v, bool):
            continue
        try:
            float(str(v))
        except ValueError:
            words += 1
    return "categorical" if words * 2 > len(seen) else "numeric"


@dataclass
class Column:
    """How one feature is encoded."""

    name: str
    type: str  # numeric | categorical | boolean
    missing: str  # refuse | impute | indicator
    fill: float = 0.0
    mean: float = 0.0
    std: float = 1.0
    min_count: int = 5
    vocab: dict[str, float] = field(default_factory=dict)  # category text -> code


@dataclass
class Preprocessing:
    """The learned encoding of one version (see the module docstring)."""

    columns: list[Column]
    slots: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": 1,
            "columns": [vars(c).copy() for c in self.columns],
            "slots": [dict(s) for s in self.slots],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Preprocessing:
        return cls([Column(**c) for c in data["columns"]], [dict(s) for s in data["slots"]])

    @property
    def width(self) -> int:
        return len(self.slots)

    def unknown_rate(self, x: F64) -> dict[str, float]:
        """Per categorical column, the share of present values outside the vocabulary."""
        out: dict[str, float] = {}
        for j, c in enumerate(self.columns):
            if c.type != "categorical":
                continue
            v = x[:, j][~np.isnan(x[:, j])]
            known = np.isin(v, list(c.vocab.values()))
            out[c.name] = float((~known).mean()) if len(v) else 0.0
        return out

    def widen(self, x: F64, names: dict[float, str] | None = None) -> Preprocessing:
        """A copy with every category now frequent in ``x`` (at least ``min_count`` times)
        added as new slots at the end; old slots and statistics unchanged."""
        cols = [Column(**vars(c)) for c in self.columns]
        slots = [dict(s) for s in self.slots]
        for j, c in enumerate(cols):
            if c.type != "categorical":
                continue
            known = set(c.vocab.values())
            for code in _frequent(x[:, j], c.min_count):
                if code not in known:
                    label = (names or {}).get(code, f"#{int(code)}")
                    c.vocab[label] = code
                    slots.append({"kind": "category", "column": j, "code": code})
        return Preprocessing(cols, slots)


def _frequent(col: F64, min_count: int) -> list[float]:
    v = col[~np.isnan(col)]
    codes, counts = np.unique(v, return_counts=True)
    return [float(c) for c, n in zip(codes, counts, strict=True) if n >= min_count]


def fit_preprocessing(
    x: F64, specs: list[dict[str, Any]], names: dict[float, str] | None = None
) -> Preprocessing:
    """Learn the encoding from training rows ``x`` (raw form, NaN where missing).

    ``specs`` holds per feature ``name``, ``type``, ``missing`` and ``min_count``;
    ``names`` maps category codes back to their text (for the JSON and the page).
    """
    columns: list[Column] = []
    slots: list[dict[str, Any]] = []
    for j, spec in enumerate(specs):
        col = x[:, j]
        present = col[~np.isnan(col)]
        c = Column(spec["name"], spec["type"], spec["missing"], min_count=spec["min_count"])
        if c.type == "numeric":
            c.fill = float(np.median(present)) if len(present) else 0.0
            c.mean = float(present.mean()) if len(present) else 0.0
            sd = float(present.std()) if len(present) > 1 else 1.0
            c.std = sd if sd > 1e-8 else 1.0
            slots.append({"kind": "numeric", "column": j})
        elif c.type == "boolean":
            c.fill = float(np.round(present.mean())) if len(present) else 0.0
            slots.append({"kind": "numeric", "column": j})
        else:
            codes, counts = np.unique(present, return_counts=True)
            c.fill = float(codes[counts.argmax()]) if len(codes) else -1.0
            for code in _frequent(col, c.min_count):
                c.vocab[(names or {}).get(code, f"#{int(code)}")] = code
                slots.append({"kind": "category", "column": j, "code": code})
            slots.append({"kind": "unknown", "column": j})
        if c.missing == "indicator":
            slots.append({"kind": "missing", "column": j})
        columns.append(c)
    return Preprocessing(columns, slots)


class Encoder(nn.Module):
    """The encoding as torch operations (traceable for TorchScript and ONNX)."""

    # the buffers __init__ registers (annotations only: nn.Module holds them)
    fill: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    slot_col: torch.Tensor
    slot_kind: torch.Tensor
    slot_code: torch.Tensor
    is_cat: torch.Tensor
    vocab_of: torch.Tensor

    def __init__(self, prep: Preprocessing) -> None:
        super().__init__()
        n = len(prep.columns)
        fill = torch.tensor([c.fill for c in prep.columns], dtype=torch.float32)
        mean = torch.tensor([c.mean for c in prep.columns], dtype=torch.float32)
        std = torch.tensor([c.std for c in prep.columns], dtype=torch.float32)
        self.register_buffer("fill", fill)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        kinds = {"numeric": 0, "category": 1, "unknown": 2, "missing": 3}
        self.register_buffer("slot_col", torch.tensor([s["column"] for s in prep.slots]))
        self.register_buffer(
            "slot_kind", torch.tensor([kinds[s["kind"]] for s in prep.slots])
        )
        self.register_buffer(
            "slot_code",
            torch.tensor([float(s.get("code", -1.0)) for s in prep.slots], dtype=torch.float32),
        )
        cat = torch.zeros(n, dtype=torch.bool)
        for j, c in enumerate(prep.columns):
            cat[j] = c.type == "categorical"
        self.register_buffer("is_cat", cat)
        # per slot, the codes of its column's vocabulary (for the unknown bucket)
        vocab = torch.zeros(len(prep.slots), n, dtype=torch.float32)
        for i, s in enumerate(prep.slots):
            if s["kind"] == "category":
                vocab[i, s["column"]] = 1.0
        self.register_buffer("vocab_of", vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.fill.dtype)
        missing = torch.isnan(x)
        filled = torch.where(missing, self.fill.expand_as(x), x)
        standard = (filled - self.mean) / self.std
        v = filled[:, self.slot_col]  # [n, slots]: each slot's column value
        is_code = (v == self.slot_code).to(x.dtype)
        hits = is_code * (self.slot_kind == 1).to(x.dtype)
        known = hits @ self.vocab_of  # [n, columns]: 1 where the value is in the vocabulary
        numeric = standard[:, self.slot_col]
        unknown = 1.0 - known[:, self.slot_col]
        miss = missing[:, self.slot_col].to(x.dtype)
        k = self.slot_kind
        out = torch.where(k == 0, numeric, hits)
        out = torch.where(k == 2, unknown, out)
        return torch.where(k == 3, miss, out)


class TabularModel(nn.Module):
    """:class:`Encoder` then the inner model (an MLP over the encoded slots)."""

    def __init__(self, prep: Preprocessing, inner: nn.Module) -> None:
        super().__init__()
        self.encoder = Encoder(prep)
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(self.encoder(x))  # type: ignore[no-any-return]


@torch.no_grad()
def widen_model(model: TabularModel, old: Preprocessing, new: Preprocessing) -> TabularModel:
    """``model`` for ``new`` (``old`` with slots appended): the first linear layer gets
    zero weights for the new slots, so every row scores as it did."""
    added = new.width - old.width
    inner = model.inner
    if added == 0:
        return model
    for name, buf in list(inner.named_buffers(recurse=False)):
        if name in ("mean", "std") and buf.numel() == old.width:
            pad = torch.zeros(added) if name == "mean" else torch.ones(added)
            setattr(inner, name, torch.cat([buf, pad.to(buf.dtype)]))
    first = next((m for m in inner.modules() if isinstance(m, nn.Linear)), None)
    if first is None or first.in_features != old.width:
        raise ValueError("the model's first layer does not take the encoded slots")
    weight = torch.cat([first.weight, first.weight.new_zeros(first.out_features, added)], 1)
    first.weight = nn.Parameter(weight)
    first.in_features = new.width
    wide = TabularModel(new, inner)
    return wide
