"""Generate the churn example's table: a subscription service's customers (no download).

Columns: ``customer_id``, ``ts`` (signup time, ISO 8601), ``plan`` (basic/pro/team),
``tenure`` (months), ``spend`` (per month; about 3% missing), ``churned`` (yes/no).

- ``stream/part-001.csv``: 4000 customers, plan mix 60/30/10; churn falls with tenure
  and rises with spend on the basic plan;
- ``stream/part-002.csv``: 4000 later customers: the plan mix turns to 20/30/50 and team
  customers now churn when their spend is low (a drift planted in the category mix,
  with a new concept on the grown category); a few rows carry the unseen plan
  ``enterprise`` (scored in the unknown bucket) and a few lack ``tenure`` (quarantined:
  tenure is configured ``missing: refuse``).

Usage: python configs/data/churn/generate.py   (deterministic; rewrites the files)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
PLANS = np.array(["basic", "pro", "team"])


def customers(
    rng: np.random.Generator, n: int, mix: list[float], first: int, drifted: bool
) -> pd.DataFrame:
    """``n`` customers with plan shares ``mix``; ``drifted`` turns on the new concept."""
    plan = rng.choice(PLANS, size=n, p=mix)
    tenure = rng.integers(1, 61, size=n).astype(float)
    base = np.select([plan == "basic", plan == "pro"], [20.0, 50.0], 90.0)
    spend = np.round(base * rng.lognormal(0.0, 0.35, size=n), 2)
    logit = 1.2 - tenure / 15.0 + np.where(plan == "basic", (spend - 20.0) / 8.0, 0.0)
    if drifted:
        logit = np.where(plan == "team", 2.5 - spend / 30.0, logit)
    else:
        logit = np.where(plan == "team", -1.5, logit)
    churned = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    start = pd.Timestamp("2025-01-01T00:00:00Z") + pd.Timedelta(minutes=10 * first)
    ts = start + pd.to_timedelta(np.arange(n) * 10 + rng.integers(0, 5, n), unit="min")
    df = pd.DataFrame({
        "customer_id": [f"c{first + i}" for i in range(n)],
        "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "plan": plan,
        "tenure": tenure,
        "spend": spend,
        "churned": np.where(churned, "yes", "no"),
    })
    df.loc[rng.random(n) < 0.03, "spend"] = np.nan
    return df


def main() -> None:
    rng = np.random.default_rng(18)
    first = customers(rng, 4000, [0.6, 0.3, 0.1], 0, drifted=False)
    second = customers(rng, 4000, [0.2, 0.3, 0.5], 4000, drifted=True)
    second.loc[second.index[10:15], "plan"] = "enterprise"
    second.loc[second.index[20:23], "tenure"] = np.nan
    out = HERE / "stream"
    out.mkdir(exist_ok=True)
    first.to_csv(out / "part-001.csv", index=False)
    second.to_csv(out / "part-002.csv", index=False)


if __name__ == "__main__":
    main()
