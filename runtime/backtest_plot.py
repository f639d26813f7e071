"""The PNG that ``driftloop backtest --plot`` writes: each watched signal with the alarms
(solid, one colour per detector) and the true drifts (dashed black)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from detectors.base import Detector

if TYPE_CHECKING:
    from runtime.backtest import Alarm


def plot_backtest(path: Path, dets: list[Detector], feeds: dict[str, np.ndarray],
                  alarms: list[Alarm], truth: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[str, np.ndarray] = {}
    for det in dets:
        v = feeds[det.name]
        panels.setdefault(det.signal, v if v.ndim == 1 else v[:, : min(v.shape[1], 4)])
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 2.6 * len(panels)), sharex=True,
                             squeeze=False)
    colours = {d.name: f"C{i + 1}" for i, d in enumerate(dets)}
    for ax, (signal, values) in zip(axes[:, 0], panels.items(), strict=True):
        ax.plot(np.arange(len(values)), values, lw=0.4, color="0.4")
        ax.set_ylabel(signal)
        for t in truth:
            ax.axvline(t, color="black", ls="--", lw=1.2)
        for name in colours:
            rows = [a.index for a in alarms if a.detector == name]
            for i, r in enumerate(rows):
                ax.axvline(r, color=colours[name], lw=1.0, label=name if i == 0 else None)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", fontsize=8)
    axes[-1, 0].set_xlabel("row")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
