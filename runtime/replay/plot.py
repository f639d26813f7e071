"""``driftloop replay --plot``: accuracy (or MAE) over the stream with the retrain marks (a PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from runtime.replay.engine import RunResult


def rolling_accuracy(correct: npt.NDArray[np.float64], start: int, window: int
                     ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Mean of the last ``window`` scored rows at each position from ``start`` on."""
    c = correct[start:]
    ok = ~np.isnan(c)
    hits = np.concatenate([[0.0], np.cumsum(np.where(ok, c, 0.0))])
    n = np.concatenate([[0.0], np.cumsum(ok)])
    idx = np.arange(1, len(c) + 1)
    lo = np.maximum(0, idx - window)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = (hits[idx] - hits[lo]) / (n[idx] - n[lo])
    return np.arange(start, len(correct)), acc


def plot(results: Sequence[RunResult], path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not results:
        raise ValueError("nothing to plot")
    n = len(results[0].correct) - results[0].start
    window = max(200, n // 50)
    fig, ax = plt.subplots(figsize=(11, 4.5))
    for r in results:
        x, acc = rolling_accuracy(r.correct, r.start, window)
        ax.plot(x, acc, lw=1.4 if r is results[0] else 0.9, label=f"{r.name}: {r.value:.3f}")
    loop = results[0]
    for i, rec in enumerate(loop.retrains):
        promoted = rec.outcome == "promoted"
        ax.axvline(rec.requested_at, color="tab:green" if promoted else "tab:red",
                   ls="-" if promoted else "--", lw=0.8, alpha=0.7,
                   label=None if i else "retrain (green: promoted, red dashed: refused)")
    ax.set_xlabel("stream row")
    metric = "MAE" if loop.metric == "mae" else "accuracy"
    ax.set_ylabel(f"{metric}, last {window} rows")
    ax.set_title(title or f"prequential {metric} of the served model")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
