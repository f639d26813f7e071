"""Benchmark (not a test): the label-free accuracy estimate (CBPE) against the realized
accuracy, window by window, once the labels are known.

The runtime's own pieces, without the daemon around them: the default MLP trained like the
bootstrap (strategies' finetune), calibrated on a held-out golden split as ``save_unit``
does (strategies/calibration.py), the stream scored by the daemon's
:class:`~runtime.monitoring.monitor.Monitor` (calibrated probabilities from the scoring
pass), and :func:`~runtime.monitoring.estimate.cbpe` per window of ``--window`` rows.

Streams:

- ``agrawal-covariate``: river's Agrawal (function 1, the demo's generator,
  runtime/intake/demo_stream.py); v1 learns ages 20-80, then the stream shifts from ages
  20-40 to ages 60-80 (a pure covariate shift inside what v1 learned), then ages 60-80 with
  40 % of labels flipped (the demo's labelling bug: concept drift).
- ``agrawal-demo``: the demo's own schedule (v1 learns ages 20-40 only, then ages 60-80):
  a covariate shift *out of* what v1 learned, where a calibration fitted on ages 20-40 no
  longer holds; reported to show where CBPE is blind.
- ``electricity``: scikit-multiflow's Electricity (bench/streams.py), v1 learns the first
  5,000 half-hours, the rest is scored in stream order (real, mixed drift).
- ``employment-age`` and ``covertype-elevation``: real tables with their real labels
  (nannyml's ACS employment in Massachusetts, binary; scikit-multiflow's forest
  covertype, 7 classes; bench/streams.py), a covariate shift made by ordering: the rows
  are shuffled (seeded), v1 learns the first 5,000, 4,000 more are held for the last
  segment, and the rest are streamed sorted on one feature (age; elevation), so the
  input distribution moves from one end of that feature to the other while the
  labelling function stays the table's own (``P(y|x)`` unchanged; every region was in
  v1's random sample). The last segment is the 4,000 held rows in random order with 40 %
  of their labels changed to another class (a labelling bug: concept drift).

Per stream and segment: the mean absolute gap |estimated - realized| over the windows (of
accuracy, and of macro-F1), and the windows where the realized accuracy left the band
(flagged as divergence). Prints a
table, writes bench/results/estimated.json and bench/results/estimated.png.

Usage: python bench/estimated.py [--quick] [--window N] [--streams NAME ...] [--calibration M]
[--json OUT.json] [--png OUT.png] (the plot goes beside the JSON unless ``--png`` says where)
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime.intake.demo_stream import segment_rows  # noqa: E402
from runtime.intake.settings import Segment  # noqa: E402
from runtime.monitoring.estimate import cbpe  # noqa: E402
from runtime.monitoring.monitor import Monitor  # noqa: E402
from strategies import calibration, finetune  # noqa: E402
from strategies.base import Budget, TrainRequest  # noqa: E402
from strategies.evaluation import predict_logits  # noqa: E402
from strategies.models import MLPConfig, build_model, fit_normalization  # noqa: E402


@dataclass
class Stream:
    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    x: np.ndarray
    y: np.ndarray
    segments: list[tuple[str, int, int, bool]]  # name, first, end (rows), concept drift?


def _agrawal(segments: list[Segment], seed: int) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for i, seg in enumerate(segments):
        for x, y in segment_rows(seg, seed + i):
            xs.append(x)
            ys.append(y)
    return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.int64)


def agrawal(name: str, quick: bool) -> Stream:
    n = 2000 if quick else 4000
    young, old = {"age": (20.0, 40.0)}, {"age": (60.0, 81.0)}
    learn = {"age": (20.0, 81.0)} if name == "agrawal-covariate" else young
    tx, ty = _agrawal([Segment(name="v1", rows=3000, function=1, where=learn)], seed=101)
    parts = [("ages 20-40", young, 0.0, False), ("ages 60-80 (covariate shift)", old, 0.0,
                                                   False)]
    if name == "agrawal-covariate":
        parts.append(("ages 60-80, 40% labels flipped (concept drift)", old, 0.4, True))
    segs = [Segment(name=p[0], rows=n, function=1, where=p[1], label_noise=p[2])
            for p in parts]
    x, y = _agrawal(segs, seed=7)
    bounds = [(p[0], i * n, (i + 1) * n, p[3]) for i, p in enumerate(parts)]
    return Stream(name, tx, ty, x, y, bounds)


def electricity(quick: bool) -> Stream:
    from bench.streams import electricity as load

    frame = load()
    y = frame.pop("label").to_numpy()
    classes = {v: i for i, v in enumerate(sorted(set(y.tolist())))}
    y = np.asarray([classes[v] for v in y.tolist()], dtype=np.int64)
    x = frame.to_numpy(dtype=np.float64)
    start, end = 5000, (20_000 if quick else len(y))
    return Stream("electricity", x[:start], y[:start], x[start:end], y[start:end],
                  [("after the first 5,000 half-hours", 0, end - start, False)])


def sorted_on(name: str, frame: Any, feature: str, quick: bool, seed: int = 5) -> Stream:
    """A real table streamed sorted on ``feature`` (a covariate shift, labels the
    table's own), then held-out rows with 40 % of labels changed (concept drift)."""
    labels = frame.pop("label").to_numpy()
    classes = {v: i for i, v in enumerate(sorted(set(labels.tolist())))}
    y = np.asarray([classes[v] for v in labels.tolist()], dtype=np.int64)
    x = frame.to_numpy(dtype=np.float64)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    train_rows, held, rest = perm[:5000], perm[5000:9000], perm[9000:]
    if quick:
        held, rest = held[:1000], rest[:4000]
    col = list(frame.columns).index(feature)
    order = rest[np.argsort(x[rest, col], kind="stable")]  # ties stay shuffled
    bad = y[held].copy()
    flip = rng.random(len(held)) < 0.4
    bad[flip] = (bad[flip] + rng.integers(1, len(classes), flip.sum())) % len(classes)
    n = len(order)
    quarter = [0, n // 4, n // 2, 3 * n // 4, n]
    segs = []
    for a, b in itertools.pairwise(quarter):
        lo, hi = x[order[a], col], x[order[b - 1], col]
        segs.append((f"{feature} {lo:g}-{hi:g} (covariate shift)", a, b, False))
    segs.append(("held rows, 40% labels changed (concept drift)", n, n + len(held), True))
    return Stream(name, x[train_rows], y[train_rows], np.concatenate([x[order], x[held]]),
                  np.concatenate([y[order], bad]), segs)


def employment_age(quick: bool) -> Stream:
    from bench.streams import employment

    return sorted_on("employment-age", employment(), "AGEP", quick)


def covertype_elevation(quick: bool) -> Stream:
    from bench.streams import covertype

    return sorted_on("covertype-elevation", covertype(), "Elevation", quick)


def macro_f1(pred: np.ndarray, y: np.ndarray) -> float:
    """Realized macro-F1 over the classes predicted or present (as the expected one)."""
    scores = []
    for c in np.union1d(pred, y):
        tp = float(((pred == c) & (y == c)).sum())
        denom = float((pred == c).sum() + (y == c).sum())
        scores.append(2 * tp / denom)
    return float(np.mean(scores))


def train(s: Stream, seed: int, epochs: int, method: calibration.Method = "temperature",
          ) -> tuple[torch.nn.Module, calibration.Calibration]:
    """The MLP on 80 % of the training rows; calibrated on the other 20 % (golden)."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(s.train_y))
    gold, fit_rows = perm[: len(perm) // 5], perm[len(perm) // 5:]
    k = int(max(s.train_y.max(), s.y.max())) + 1
    model = build_model(MLPConfig(hidden=[64, 64]), s.train_x.shape[1], k, seed=seed)
    xt = torch.as_tensor(s.train_x[fit_rows], dtype=torch.float32)
    fit_normalization(model, xt)
    finetune.build(finetune.Config(lr=3e-3, batch_size=64)).train(TrainRequest(
        model, xt, torch.as_tensor(s.train_y[fit_rows]),
        budget=Budget(epochs=epochs, steps=None, seconds=None), seed=seed))
    model.eval()
    logits = predict_logits(model, torch.as_tensor(s.train_x[gold], dtype=torch.float32))
    return model, calibration.fit(logits.numpy().astype(np.float64), s.train_y[gold], method)


def windows(s: Stream, model: torch.nn.Module, cal: calibration.Calibration,
            window: int) -> list[dict[str, Any]]:
    """Per window: estimated accuracy and band (calibrated and raw), realized accuracy."""
    classes = list(range(int(max(s.train_y.max(), s.y.max())) + 1))
    monitor, raw_monitor = Monitor(model, classes, cal), Monitor(model, classes)
    out = []
    for name, first, end, concept in s.segments:
        for a in range(first, end - window + 1, window):
            x, y = s.x[a:a + window], s.y[a:a + window]
            sig = monitor.score(x, y)
            assert sig.calibrated is not None
            est = cbpe(sig.calibrated, cal.error)
            raw = raw_monitor.score(x, y).calibrated
            assert raw is not None
            realized = float((sig.prediction == y).mean())
            out.append({"segment": name, "concept_drift": concept, "first_row": a,
                        "estimated": est.accuracy, "low": est.low, "high": est.high,
                        "macro_f1": est.macro_f1, "uncalibrated": float(raw.max(axis=1).mean()),
                        "realized": realized,
                        "realized_macro_f1": macro_f1(sig.prediction, y),
                        "diverged": not est.low <= realized <= est.high})
    return out


def summarize(ws: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for seg in dict.fromkeys(w["segment"] for w in ws):
        got = [w for w in ws if w["segment"] == seg]
        gap = [abs(w["estimated"] - w["realized"]) for w in got]
        raw = [abs(w["uncalibrated"] - w["realized"]) for w in got]
        f1 = [abs(w["macro_f1"] - w["realized_macro_f1"]) for w in got]
        rows.append({"segment": seg, "concept_drift": got[0]["concept_drift"],
                     "windows": len(got), "mean_abs_gap": round(float(np.mean(gap)), 4),
                     "mean_abs_gap_uncalibrated": round(float(np.mean(raw)), 4),
                     "mean_abs_gap_macro_f1": round(float(np.mean(f1)), 4),
                     "realized": round(float(np.mean([w["realized"] for w in got])), 4),
                     "estimated": round(float(np.mean([w["estimated"] for w in got])), 4),
                     "diverged_windows": sum(w["diverged"] for w in got)})
    return rows


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["streams"])
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 3.2 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        ws = results["streams"][name]["windows"]
        at = [w["first_row"] for w in ws]
        ax.fill_between(at, [w["low"] for w in ws], [w["high"] for w in ws], alpha=0.25,
                        step="post", label="estimate's band")
        ax.step(at, [w["estimated"] for w in ws], where="post", label="estimated (CBPE)")
        ax.step(at, [w["realized"] for w in ws], where="post", label="realized", color="k")
        bad = [w for w in ws if w["diverged"]]
        ax.scatter([w["first_row"] for w in bad], [w["realized"] for w in bad], color="red",
                   marker="x", zorder=3, label="diverged (outside band)")
        ax.set_title(name)
        ax.set_ylabel("accuracy")
        ax.set_ylim(0.3, 1.02)
    axes[0, 0].legend(loc="lower left", fontsize=8)
    axes[-1, 0].set_xlabel("row of the stream (window start)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(results: dict[str, Any]) -> str:
    lines = [f"{'stream':<18} {'segment':<48} {'win':>4} {'realized':>8} {'estim.':>7} "
             f"{'|gap|':>6} {'raw|gap|':>8} {'F1|gap|':>7} {'diverged':>8}"]
    for name, r in results["streams"].items():
        for s in r["segments"]:
            lines.append(f"{name:<18} {s['segment'][:48]:<48} {s['windows']:>4} "
                         f"{s['realized']:>8.3f} {s['estimated']:>7.3f} {s['mean_abs_gap']:>6.3f} "
                         f"{s['mean_abs_gap_uncalibrated']:>8.3f} "
                         f"{s['mean_abs_gap_macro_f1']:>7.3f} {s['diverged_windows']:>8}")
    return "\n".join(lines)


STREAMS = {
    "agrawal-covariate": lambda quick: agrawal("agrawal-covariate", quick),
    "agrawal-demo": lambda quick: agrawal("agrawal-demo", quick),
    "electricity": electricity,
    "employment-age": employment_age,
    "covertype-elevation": covertype_elevation,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--window", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=ROOT / "bench/results/estimated.json")
    ap.add_argument("--png", type=Path, default=None, help="default: the JSON's name, .png")
    ap.add_argument("--streams", nargs="+", choices=list(STREAMS), default=list(STREAMS))
    ap.add_argument("--calibration", choices=["temperature", "isotonic"], default="temperature",
                    help="as policy.estimate.calibration")
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.time()
    streams = [STREAMS[name](args.quick) for name in args.streams]
    results: dict[str, Any] = {"window": args.window, "seed": args.seed, "quick": args.quick,
                               "calibration": args.calibration, "streams": {}}
    for s in streams:
        model, cal = train(s, args.seed, 10 if args.quick else 30, args.calibration)
        ws = windows(s, model, cal, args.window)
        shifted = [abs(w["estimated"] - w["realized"]) for w in ws if not w["concept_drift"]]
        results["streams"][s.name] = {"calibration": cal.to_json(), "segments": summarize(ws),
                                      "mean_abs_gap_outside_concept_segments": round(
                                          float(np.mean(shifted)), 4),
                                      "windows": ws}
    results["seconds"] = round(time.time() - t0, 1)
    print(table(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    png = args.png or args.json.with_suffix(".png")
    plot(results, png)
    print(f"wrote {args.json} and {png} in {results['seconds']} s")


if __name__ == "__main__":
    main()
