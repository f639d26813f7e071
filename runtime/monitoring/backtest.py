"""``driftloop backtest``: replay a logged stream through detectors, without training.

The file (CSV or Parquet) is fed in batches of :data:`BATCH` rows with row indices
``0 .. n-1``; after each batch every detector is checked, as the daemon does, and every
alarm is reported (row index, onset, detector, statistic). Detectors on ``error``,
``loss`` or ``confidence`` read the column of that name (signals logged by the serving
system); ``features`` detectors read the schema's feature columns; a feature-name
detector reads that column. Without a config, one numeric column (or ``--column``) is
watched by :func:`detectors.registry.default_univariate`.

With ``--truth`` (a JSON list of true drift rows) each detector is scored: the first alarm
at or after a true drift and before the next one detects it (delay = alarm - drift);
every other alarm is a false alarm; a drift without such an alarm is missed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from detectors.base import MODEL_SIGNALS, Detector
from detectors.registry import build, default_univariate
from runtime.monitoring.columns import with_column_detectors

if TYPE_CHECKING:
    import pandas as pd

    from runtime.config import DriftloopConfig

BATCH = 100


@dataclass(frozen=True)
class Alarm:
    index: int
    onset: int | None
    detector: str
    signal: str
    statistic: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "onset": self.onset, "detector": self.detector,
                "signal": self.signal, "statistic": self.statistic}


def read_table(path: Path) -> pd.DataFrame:
    import pandas as pd

    if not path.exists():
        raise ValueError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix in {".parquet", ".pq"}:
            return pd.read_parquet(path)
    except Exception as err:  # the reader's own message, on one line
        raise ValueError(f"{path}: cannot read ({str(err).splitlines()[0]})") from None
    raise ValueError(f"{path}: expected a .csv or .parquet file")


def _numeric(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame.columns:
        columns = ", ".join(map(str, frame.columns))
        raise ValueError(f"the file has no column {name!r} (columns: {columns})")
    col = frame[name]
    if not np.issubdtype(col.dtype, np.number):
        raise ValueError(f"column {name!r} is not numeric")
    out: np.ndarray = col.to_numpy(dtype=np.float64)
    return out


def plan(frame: pd.DataFrame, cfg: DriftloopConfig | None, column: str | None
         ) -> tuple[list[Detector], dict[str, np.ndarray]]:
    """The detectors and, per detector name, the array it is fed (1-D or rows x features)."""
    if cfg is None:
        if column is None:
            numeric = [c for c in frame.columns if np.issubdtype(frame[c].dtype, np.number)]
            if len(numeric) != 1:
                raise ValueError(
                    f"without --config the file must have one numeric column, it has "
                    f"{len(numeric)} ({', '.join(map(str, numeric[:6]))}): pick one with --column"
                )
            column = str(numeric[0])
        values = _numeric(frame, column)
        # watch the column under its own name (in the report and the plot)
        dets = [build(c.model_copy(update={"signal": column}), [column])
                for c in default_univariate()]
        return dets, {d.name: values for d in dets}
    if column is not None:
        raise ValueError("--column picks the watched column without --config; "
                         "with --config the detectors name their signals")
    features = list(cfg.schema.features)
    configs = with_column_detectors(cfg.detectors, cfg.schema, cfg.schema_detectors)
    dets = [build(c, features) for c in configs]
    feeds: dict[str, np.ndarray] = {}
    for det in dets:
        if det.signal == "features":
            missing = [f for f in features if f not in frame.columns]
            if missing:
                raise ValueError(f"{det.name} watches the features; the file lacks {missing}")
            feeds[det.name] = np.column_stack([_numeric(frame, f) for f in features])
        else:
            if det.signal in MODEL_SIGNALS and det.signal not in frame.columns:
                raise ValueError(f"{det.name} watches {det.signal!r}: the file needs a column "
                                 f"{det.signal!r} (backtest does not run the model)")
            feeds[det.name] = _numeric(frame, det.signal)
    return dets, feeds


def replay(dets: list[Detector], feeds: dict[str, np.ndarray], rows: int) -> list[Alarm]:
    alarms: list[Alarm] = []
    for start in range(0, rows, BATCH):
        idx = np.arange(start, min(start + BATCH, rows), dtype=np.int64)
        for det in dets:
            det.update(feeds[det.name][idx], idx)
            sig = det.check()
            if sig.drift:
                at = sig.index if sig.index is not None else int(idx[-1])
                stat = sig.statistic
                if stat is not None and not np.isfinite(stat):
                    stat = None
                alarms.append(Alarm(int(at), sig.onset, sig.detector, sig.signal, stat))
    return alarms


def score(alarms: list[int], truth: list[int]) -> dict[str, Any]:
    """Delays, false alarms and misses of one detector's alarm rows against true drifts.

    >>> score([50, 1010, 1100, 2600], [1000, 2000])
    {'detected': 2, 'missed': 0, 'false_alarms': 2, 'delays': [10, 600], 'mean_delay': 305.0}
    >>> score([50], [1000])['missed']
    1
    """
    bounds = [*sorted(truth), float("inf")]
    delays: list[int | None] = []
    used: set[int] = set()
    for t, nxt in pairwise(bounds):
        hit = next((a for a in sorted(alarms) if t <= a < nxt), None)
        delays.append(None if hit is None else int(hit - t))
        if hit is not None:
            used.add(hit)
    found = [d for d in delays if d is not None]
    return {
        "detected": len(found),
        "missed": len(delays) - len(found),
        "false_alarms": len(alarms) - len(used),
        "delays": delays,
        "mean_delay": float(np.mean(found)) if found else None,
    }


def _truth(path: Path) -> list[int]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such truth file") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON (line {err.lineno})") from None
    if not isinstance(data, list) or not all(isinstance(x, int) and x >= 0 for x in data):
        raise ValueError(f"{path}: expected a JSON list of row indices (non-negative integers)")
    return sorted(data)


def backtest_command(data: Path, cfg: DriftloopConfig | None, *, column: str | None,
                     truth: Path | None, as_json: bool, plot: Path | None) -> str:
    """Run the backtest and return the text to print (raises ``ValueError``, one line)."""
    frame = read_table(data)
    true_rows = _truth(truth) if truth is not None else None
    dets, feeds = plan(frame, cfg, column)
    alarms = replay(dets, feeds, len(frame))
    summary: dict[str, Any] = {"rows": len(frame), "detectors": {}}
    for det in dets:
        mine = [a.index for a in alarms if a.detector == det.name]
        entry: dict[str, Any] = {"signal": det.signal, "alarms": len(mine)}
        if true_rows is not None:
            entry.update(score(mine, true_rows))
        summary["detectors"][det.name] = entry
    if true_rows is not None:
        summary["truth"] = true_rows
    if plot is not None:

        plot_backtest(plot, dets, feeds, alarms, true_rows or [])
        summary["plot"] = str(plot)
    if as_json:
        return json.dumps({"alarms": [a.to_dict() for a in alarms], "summary": summary})
    return _text(alarms, summary)


def _text(alarms: list[Alarm], summary: dict[str, Any]) -> str:
    lines = [f"{summary['rows']} rows, {len(alarms)} alarms"]
    for a in alarms:
        stat = "-" if a.statistic is None else f"{a.statistic:.4g}"
        lines.append(f"  row {a.index:>8}  onset {a.onset!s:>8}  {a.detector} on {a.signal}"
                     f"  statistic {stat}")
    for name, e in summary["detectors"].items():
        line = f"{name} ({e['signal']}): {e['alarms']} alarms"
        if "detected" in e:
            delay = "-" if e["mean_delay"] is None else f"{e['mean_delay']:.0f}"
            line += (f", detected {e['detected']}/{e['detected'] + e['missed']}, mean delay "
                     f"{delay} rows, false alarms {e['false_alarms']}")
        lines.append(line)
    if "plot" in summary:
        lines.append(f"plot: {summary['plot']}")
    return "\n".join(lines)


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
