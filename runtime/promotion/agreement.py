"""Golden knowledge the new data contradicts: which golden rows are obsolete.

Under real concept drift the label of the same inputs changes, and a candidate that fits
the present must get an old golden set's rows "wrong". A golden row is judged only where
the new data does not contradict it: a row whose ``k`` nearest new-data rows mostly carry
another label is left out of the golden checks (``gate.obsolete_golden: exclude``). A row
the new data agrees with, or has no word on, stays: forgetting it is still forgetting. A row
has no word from the new data when even its ``k``-th nearest new row is more than twice as
far as new rows are from their own ``k``-th neighbours (the 99th percentile of those
distances): the new data lies elsewhere (another language, another region of the inputs),
and its labels say nothing about this row's.

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
    reach = _reach(nx, k)
    out = np.zeros(len(gx))
    for lo in range(0, len(gx), _CHUNK):
        block = gx[lo : lo + _CHUNK]
        d = _squared(block, nx)
        near = np.argpartition(d, k - 1, axis=1)[:, :k]
        share = (ny[near] != gy[lo : lo + _CHUNK, None]).mean(axis=1)
        kth = np.take_along_axis(d, near, axis=1).max(axis=1)
        out[lo : lo + _CHUNK] = np.where(kth <= reach, share, 0.0)  # beyond: no word on it
    return out


def _squared(a: F64, b: F64) -> F64:
    """Squared Euclidean distances between the rows of ``a`` and of ``b``."""
    out: F64 = np.maximum((a**2).sum(1)[:, None] - 2 * a @ b.T + (b**2).sum(1)[None, :], 0.0)
    return out


def _reach(nx: F64, k: int, sample: int = 1000) -> float:
    """Four times (twice the distance) the 99th percentile of new rows' squared distance
    to their ``k``-th nearest other new row, over an evenly spaced sample of at most
    ``sample`` rows."""
    if len(nx) <= k:
        return float("inf")
    idx = np.linspace(0, len(nx) - 1, min(sample, len(nx))).astype(np.int64)
    kth = np.empty(len(idx))
    for lo in range(0, len(idx), _CHUNK):
        part = idx[lo : lo + _CHUNK]
        d = _squared(nx[part], nx)
        d[np.arange(len(part)), part] = np.inf  # not its own neighbour
        kth[lo : lo + _CHUNK] = np.partition(d, k - 1, axis=1)[:, k - 1]
    return 4.0 * float(np.percentile(kth, 99))


def contradicted(
    golden: EvalSet, new: EvalSet, k: int = 7, share: float = 0.6
) -> npt.NDArray[np.bool_]:
    """True for each golden row whose ``k`` nearest new rows disagree with its label in at
    least ``share`` of cases (all False when the new data has fewer than ``k`` rows)."""
    shares = neighbour_disagreement(golden, new, k)
    if shares is None:
        return np.zeros(len(golden), dtype=bool)
    return shares >= share
