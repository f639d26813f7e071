"""Golden knowledge the new data contradicts: which golden rows are obsolete.

Under real concept drift the label of the same inputs changes, and a candidate that fits
the present must get an old golden set's rows "wrong". A golden row is judged only where
the new data does not contradict it: a row whose ``k`` nearest new-data rows (features
standardised on the new data) mostly carry another label is left out of the golden checks
(``gate.obsolete_golden: exclude``). A row the new data agrees with, or has no word on,
stays: forgetting it is still forgetting.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from runtime.promotion.evidence import EvalSet

_CHUNK = 512  # golden rows per distance block (bounds memory at 512 x new rows)


def contradicted(
    golden: EvalSet, new: EvalSet, k: int = 7, share: float = 0.6
) -> npt.NDArray[np.bool_]:
    """True for each golden row whose ``k`` nearest new rows disagree with its label in at
    least ``share`` of cases (all False when the new data has fewer than ``k`` rows)."""
    out = np.zeros(len(golden), dtype=bool)
    if len(new) < k or not len(golden) or golden.x.shape[1] != new.x.shape[1]:
        return out
    mean = new.x.mean(axis=0)
    std = new.x.std(axis=0)
    std[~(std > 1e-12)] = 1.0
    nx = (new.x - mean) / std
    gx = (golden.x - mean) / std
    ny = np.asarray(new.y)
    for lo in range(0, len(gx), _CHUNK):
        block = gx[lo : lo + _CHUNK]
        d = (block**2).sum(1)[:, None] - 2 * block @ nx.T + (nx**2).sum(1)[None, :]
        near = np.argpartition(d, k - 1, axis=1)[:, :k]
        other = ny[near] != np.asarray(golden.y)[lo : lo + _CHUNK, None]
        out[lo : lo + _CHUNK] = other.mean(axis=1) >= share
    return out
