"""The rows a rehearsal buffer holds, beside the storage policy that picks them.

:class:`Rows` keeps each row's features, label, sample id (its position in the stream
of offered rows; labels are class labels, int64, or regression targets, float32) and,
optionally, the model's logits for it, in the order of the
policy's dataset: the policy sees only sample ids and labels, and after every update
the buffer keeps the rows whose ids it kept. Rows added without logits hold NaN until
``set_logits`` fills them.
"""

from __future__ import annotations

from typing import Any

import torch


def _label_dtype(y: torch.Tensor) -> torch.dtype:
    """Class labels are kept as int64, regression targets as float32."""
    return torch.float32 if y.is_floating_point() else torch.int64


class Rows:
    """The stored rows, aligned with the policy's dataset order."""

    def __init__(self) -> None:
        self.x = torch.empty(0, 0, dtype=torch.float32)
        self.y = torch.empty(0, dtype=torch.int64)
        self.ids = torch.empty(0, dtype=torch.int64)
        self.logits: torch.Tensor | None = None  # [n, k], NaN rows where unknown
        self.n_features: int | None = None
        self.seen = 0  # rows offered so far; the next row's sample id

    def offer(
        self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Validate and copy a batch to the CPU; give its rows fresh sample ids."""
        if x.ndim != 2:
            raise ValueError(f"buffer rows must be a matrix [n, d], got shape {list(x.shape)}")
        if y.ndim != 1 or len(y) != len(x):
            raise ValueError(f"buffer labels must be a vector of {len(x)}, got {list(y.shape)}")
        if y.is_complex():
            raise ValueError(f"buffer labels must be integers or float targets, got {y.dtype}")
        if len(self.y) and y.is_floating_point() != self.y.is_floating_point():
            held = "float targets" if self.y.is_floating_point() else "integers (class labels)"
            raise ValueError(f"buffer labels must be {held}, as it holds, got {y.dtype}")
        if self.n_features is not None and x.shape[1] != self.n_features:
            raise ValueError(f"buffer holds rows of {self.n_features} features, got {x.shape[1]}")
        zs = None
        if logits is not None:
            if logits.ndim != 2 or len(logits) != len(x):
                raise ValueError(f"buffer logits must be [{len(x)}, k], got {list(logits.shape)}")
            if self.logits is not None and logits.shape[1] != self.logits.shape[1]:
                raise ValueError(
                    f"buffer holds logits of width {self.logits.shape[1]}, got {logits.shape[1]}"
                )
            zs = logits.detach().to("cpu", torch.float32).clone()
        xs = x.detach().to("cpu", torch.float32).clone()
        ys = y.detach().to("cpu", _label_dtype(y)).clone()
        ids = torch.arange(self.seen, self.seen + len(xs), dtype=torch.int64)
        return xs, ys, ids, zs

    def accept(
        self, xs: torch.Tensor, ys: torch.Tensor, ids: torch.Tensor, zs: torch.Tensor | None
    ) -> None:
        if zs is not None and self.logits is None:
            self.logits = torch.full((len(self.y), zs.shape[1]), torch.nan)
        if zs is None and self.logits is not None:
            zs = torch.full((len(ys), self.logits.shape[1]), torch.nan)
        self.seen += len(ids)
        self.n_features = xs.shape[1]
        old_x = self.x if len(self.x) else self.x.reshape(0, xs.shape[1])
        self.x = torch.cat([xs, old_x])
        self.y = torch.cat([ys, self.y])
        self.ids = torch.cat([ids, self.ids])
        if zs is not None and self.logits is not None:
            self.logits = torch.cat([zs, self.logits])

    def set_logits(self, logits: torch.Tensor) -> None:
        if logits.ndim != 2 or len(logits) != len(self.y):
            raise ValueError(f"buffer logits must be [{len(self.y)}, k], got {list(logits.shape)}")
        self.logits = logits.detach().to("cpu", torch.float32).clone()

    def keep(self, kept: torch.Tensor) -> None:
        """Keep exactly the rows whose sample ids are ``kept``, in that order."""
        order = torch.argsort(self.ids)
        sorted_ids = self.ids[order]
        pos = torch.searchsorted(sorted_ids, kept).clamp(max=max(len(sorted_ids) - 1, 0))
        if len(kept) and not bool((sorted_ids[pos] == kept).all()):
            raise RuntimeError("avalanche returned sample ids that were never offered")
        idx = order[pos]
        self.x, self.y, self.ids = self.x[idx], self.y[idx], self.ids[idx]
        if self.logits is not None:
            self.logits = self.logits[idx]

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"x": self.x, "y": self.y, "sample_id": self.ids}
        if self.logits is not None:
            out["logits"] = self.logits
        return out

    def meta(self) -> dict[str, Any]:
        return {"samples_seen": self.seen, "n_features": self.n_features}

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        x, y, ids = tensors["x"], tensors["y"], tensors["sample_id"]
        n = len(y)
        if x.ndim != 2 or len(x) != n or ids.shape != (n,):
            raise ValueError("buffer state: x, y and sample_id do not line up")
        self.x = x.to("cpu", torch.float32).clone()
        self.y = y.to("cpu", _label_dtype(y)).clone()
        self.ids = ids.to("cpu", torch.int64).clone()
        z = tensors.get("logits")
        if z is not None and (z.ndim != 2 or len(z) != n):
            raise ValueError("buffer state: logits do not line up with the rows")
        self.logits = None if z is None else z.to("cpu", torch.float32).clone()
        self.seen = int(meta["samples_seen"])
        nf = meta["n_features"]
        self.n_features = None if nf is None else int(nf)
        if self.n_features is not None and self.x.shape[1] != self.n_features and n:
            raise ValueError("buffer state: x width does not match n_features")
        if self.n_features is not None and n == 0:
            self.x = self.x.reshape(0, self.n_features)


class RowsAccess:
    """What every buffer answers from its rows."""

    _rows: Rows

    def __len__(self) -> int:
        return len(self._rows.y)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The stored rows ``(x [n, d] float32, y [n] int64, or float32 targets)``; don't
        modify them."""
        return self._rows.x, self._rows.y

    def logits(self) -> torch.Tensor | None:
        """Stored logits ``[n, k]`` aligned with :meth:`tensors` (NaN rows: unknown)."""
        return self._rows.logits

    def set_logits(self, logits: torch.Tensor) -> None:
        """Replace the stored logits (``[n, k]``, aligned with :meth:`tensors`)."""
        self._rows.set_logits(logits)
