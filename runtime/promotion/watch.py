"""Two models side by side on live labelled traffic: shadow scoring and the rollback watch.

:class:`PairedLive` collects, for every labelled row that arrives, the probabilities of a
reference model and a challenger. Two uses:

- shadow mode: the candidate (challenger) scores live rows next to the champion
  (reference) for ``gate.shadow_rows`` rows before the gate's final decision;
- the rollback watch: after a promotion the new champion (challenger) and its predecessor
  (reference) score the next ``watch.rows`` labelled rows; if the new champion's error
  rate is significantly higher on the same rows (one-sided exact McNemar test at
  ``watch.alpha``), the daemon rolls back with the evidence (:func:`worse_than_before`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from sqlalchemy import select, update
from torch import nn

from runtime.promotion.evidence import EvalSet
from runtime.store.db import Database, from_json, kv, to_json
from runtime.store.rows import labelled
from strategies.evaluation import predict_logits, predict_proba

__all__ = [
    "PairedLive",
    "load_live_state",
    "mcnemar_greater",
    "save_live_state",
    "worse_than_before",
]

F64 = npt.NDArray[np.float64]


@dataclass
class PairedLive:
    """Labelled live rows scored by a reference model and a challenger."""

    reference_version: str
    challenger_version: str
    reference: nn.Module
    challenger: nn.Module
    wanted: int
    seqs: list[F64] = field(default_factory=list)
    x: list[F64] = field(default_factory=list)
    y: list[npt.NDArray[np.int64]] = field(default_factory=list)
    p_ref: list[F64] = field(default_factory=list)
    p_new: list[F64] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(len(v) for v in self.y)

    @property
    def full(self) -> bool:
        return self.rows >= self.wanted

    def add(self, seqs: npt.NDArray[np.int64], x: F64, y_pos: npt.NDArray[np.int64]) -> None:
        """Score the labelled rows (``y_pos`` class positions, -1 = unlabelled, skipped;
        or regression targets, NaN = unlabelled: then the models' values are kept)."""
        keep = labelled(y_pos)
        if not keep.any() or self.full:
            return
        xs = torch.as_tensor(x[keep], dtype=torch.float32)
        self.seqs.append(seqs[keep].astype(np.float64))
        self.x.append(x[keep])
        self.y.append(y_pos[keep])
        if y_pos.dtype.kind == "f":
            for out, model in ((self.p_ref, self.reference), (self.p_new, self.challenger)):
                out.append(predict_logits(model, xs).numpy().astype(np.float64).reshape(-1))
            return
        self.p_ref.append(predict_proba(self.reference, xs).numpy().astype(np.float64))
        self.p_new.append(predict_proba(self.challenger, xs).numpy().astype(np.float64))

    def seq_list(self) -> list[int]:
        """The row numbers scored so far (what a restarted daemon re-reads and re-scores)."""
        return [int(s) for part in self.seqs for s in part]

    def as_set(self, name: str, source: str) -> EvalSet:
        """The rows as an :class:`EvalSet` (reference = champion, challenger = candidate)."""
        seqs = np.concatenate(self.seqs) if self.seqs else np.zeros(0)
        return EvalSet(
            name,
            np.concatenate(self.y) if self.y else np.zeros(0, dtype=np.int64),
            np.concatenate(self.p_ref) if self.p_ref else np.zeros((0, 2)),
            np.concatenate(self.p_new) if self.p_new else np.zeros((0, 2)),
            np.concatenate(self.x) if self.x else np.zeros((0, 0)),
            {
                "rows": len(seqs),
                "first_row": int(seqs.min()) if len(seqs) else None,
                "last_row": int(seqs.max()) if len(seqs) else None,
                "source": source,
            },
        )


def mcnemar_greater(lost: int, won: int) -> float:
    """One-sided exact McNemar p-value that the challenger errs more often.

    ``lost``: rows the reference got right and the challenger wrong; ``won``: the reverse.

    Examples
    --------
    >>> round(mcnemar_greater(12, 2), 4)
    0.0065
    >>> mcnemar_greater(0, 0)
    1.0
    """
    n = lost + won
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(lost, n + 1))
    return float(min(1.0, tail / 2**n))


def worse_than_before(live: PairedLive, alpha: float) -> dict[str, Any] | None:
    """The evidence for a rollback if the challenger is significantly worse, else None."""
    s = live.as_set("watch", "live labelled traffic after the promotion")
    if not len(s):
        return None
    if s.y.dtype.kind == "f":  # regression: a sign test on which model erred more per row
        e_ref, e_new = np.abs(s.champion - s.y), np.abs(s.candidate - s.y)
        lost, won = int(np.sum(e_new > e_ref)), int(np.sum(e_ref > e_new))
        return _worse_mae(live, s, lost, won, float(e_new.mean()), float(e_ref.mean()), alpha)
    ref_ok = s.champion.argmax(axis=1) == s.y
    new_ok = s.candidate.argmax(axis=1) == s.y
    lost, won = int(np.sum(ref_ok & ~new_ok)), int(np.sum(~ref_ok & new_ok))
    p = mcnemar_greater(lost, won)
    err_new, err_ref = float(1 - new_ok.mean()), float(1 - ref_ok.mean())
    if p >= alpha or err_new <= err_ref:
        return None
    return {
        "rows": len(s),
        "first_row": s.provenance["first_row"],
        "last_row": s.provenance["last_row"],
        "error_rate": err_new,
        "predecessor_error_rate": err_ref,
        "rows_only_new_got_wrong": lost,
        "rows_only_predecessor_got_wrong": won,
        "p_value": p,
        "alpha": alpha,
        "test": "one-sided exact McNemar on the same live rows",
        "summary": (
            f"On the {len(s)} labelled rows "
            f"{s.provenance['first_row']}..{s.provenance['last_row']} "
            f"after its promotion, {live.challenger_version} erred on {err_new:.1%} of rows vs "
            f"{err_ref:.1%} for {live.reference_version} on the same rows ({lost} rows only it "
            f"got wrong, {won} only {live.reference_version} got wrong; p = {p:.2g} < {alpha:g})."
        ),
    }


def _worse_mae(live: PairedLive, s: EvalSet, lost: int, won: int, mae_new: float,
               mae_ref: float, alpha: float) -> dict[str, Any] | None:
    """The rollback evidence of a regression challenger: a larger error on significantly
    more rows (one-sided sign test) and a higher MAE on the same live rows."""
    p = mcnemar_greater(lost, won)
    if p >= alpha or mae_new <= mae_ref:
        return None
    rows = f"{s.provenance['first_row']}..{s.provenance['last_row']}"
    return {
        "rows": len(s), "first_row": s.provenance["first_row"],
        "last_row": s.provenance["last_row"], "mae": mae_new, "predecessor_mae": mae_ref,
        "rows_new_erred_more": lost, "rows_predecessor_erred_more": won, "p_value": p,
        "alpha": alpha, "test": "one-sided sign test on the same live rows",
        "summary": (
            f"On the {len(s)} labelled rows {rows} after its promotion, "
            f"{live.challenger_version}'s MAE was {mae_new:.4g} vs {mae_ref:.4g} for "
            f"{live.reference_version} ({lost} rows it erred more on, {won} fewer; "
            f"p = {p:.2g} < {alpha:g})."
        ),
    }


def save_live_state(db: Database, key: str, state: dict[str, Any]) -> None:
    """Store the shadow/watch state under ``key`` in the ``kv`` table (one transaction)."""
    blob = to_json(state)
    with db.begin() as conn:
        if conn.execute(select(kv.c.key).where(kv.c.key == key)).first() is None:
            conn.execute(kv.insert(), [{"key": key, "value": blob}])
        else:
            conn.execute(update(kv).where(kv.c.key == key).values(value=blob))


def load_live_state(db: Database, key: str) -> dict[str, Any]:
    """The state stored under ``key``; empty if there is none or it is unreadable."""
    with db.connect() as conn:
        row = conn.execute(select(kv.c.value).where(kv.c.key == key)).first()
    if row is None:
        return {}
    try:
        state = from_json(row[0])
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}
