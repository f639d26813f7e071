"""Golden knowledge the new data contradicts: which golden rows are obsolete.

Under real concept drift the label of the same inputs changes, and a candidate that fits
the present must get an old golden set's rows "wrong". A golden row is judged only where
the new data does not contradict it: a row whose ``k`` nearest new-data rows mostly carry
another label is left out of the golden checks (``gate.obsolete_golden: exclude``). A row
the new data agrees with, or has no word on, stays: forgetting it is still forgetting.

Neighbours are found where the model sees its rows: on the encoding its preprocessing
applies (:attr:`EvalSet.encoded`: one-hot categories, imputed numbers) when the evidence
carries it, else on the stored features. A stored category is a hash code, whose numeric
distance to another category means nothing, and a missing value is NaN, which would make
every distance NaN; so stored features are imputed (the new data's column median) before
both are standardised on the new data.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from runtime.promotion.evidence import EvalSet

F64 = npt.NDArray[np.float64]
_CHUNK = 512  # golden rows per distance block (bounds memory at 512 x new rows)


def neighbour_space(golden: EvalSet, new: EvalSet) -> tuple[F64, F64] | None:
    """Golden and new rows, NaN-free and standardised on the new data, in the space
    neighbours are found in (None when the two sets do not share one)."""
    if golden.encoded is not None and new.encoded is not None:
        gx, nx = golden.encoded, new.encoded
    else:
        gx, nx = golden.x, new.x
    if gx.ndim != 2 or gx.shape[1] != nx.shape[1]:
        return None
    with np.errstate(all="ignore"):
        fill = np.nanmedian(nx, axis=0) if len(nx) else np.zeros(nx.shape[1])
    fill = np.where(np.isnan(fill), 0.0, fill)
    nx = np.where(np.isnan(nx), fill, nx)
    gx = np.where(np.isnan(gx), fill, gx)
    mean = nx.mean(axis=0)
    std = nx.std(axis=0)
    std[~(std > 1e-12)] = 1.0
    return (gx - mean) / std, (nx - mean) / std


def neighbour_disagreement(golden: EvalSet, new: EvalSet, k: int = 7) -> F64 | None:
    """For each golden row, the share of its ``k`` nearest new rows whose label differs
    from its own (None when the new data has fewer than ``k`` rows or no shared space)."""
    space = neighbour_space(golden, new) if len(new) >= k and len(golden) else None
    if space is None:
        return None
    gx, nx = space
    ny = np.asarray(new.y)
    gy = np.asarray(golden.y)
    out = np.zeros(len(gx))
    for lo in range(0, len(gx), _CHUNK):
        block = gx[lo : lo + _CHUNK]
        d = (block**2).sum(1)[:, None] - 2 * block @ nx.T + (nx**2).sum(1)[None, :]
        near = np.argpartition(d, k - 1, axis=1)[:, :k]
        out[lo : lo + _CHUNK] = (ny[near] != gy[lo : lo + _CHUNK, None]).mean(axis=1)
    return out


def contradicted(
    golden: EvalSet, new: EvalSet, k: int = 7, share: float = 0.6
) -> npt.NDArray[np.bool_]:
    """True for each golden row whose ``k`` nearest new rows disagree with its label in at
    least ``share`` of cases (all False when the new data has fewer than ``k`` rows)."""
    shares = neighbour_disagreement(golden, new, k)
    if shares is None:
        return np.zeros(len(golden), dtype=bool)
    return shares >= share
