"""Export river's bundled TrumpApproval dataset as the regression example's CSV files.

TrumpApproval (shipped inside the river wheel, no download): 1,001 days of Donald Trump's
approval rating as FiveThirtyEight's model estimated it (the target ``approval``) from
five polling agencies' latest figures (``gallup``, ``ipsos``, ``morning_consult``,
``rasmussen``, ``you_gov``), in time order. The rating drifts with the news, so a model
trained on the first days meets a changed relation later: the drift is real, not planted.

Written, each row with a ``day`` id and its ``ts`` (the ordinal date as ISO 8601):

- ``stream/part-001.csv``: days 1-500;
- ``stream/part-002.csv``: days 501-1001.

Usage: python configs/data/trump_approval/export.py   (deterministic; rewrites the files)
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
POLLSTERS = ["gallup", "ipsos", "morning_consult", "rasmussen", "you_gov"]
SPLIT = 500


def table() -> pd.DataFrame:
    """Every row of the dataset, in its (time) order."""
    from river.datasets import TrumpApproval

    out = []
    for i, (x, y) in enumerate(TrumpApproval()):
        day = date.fromordinal(int(x["ordinal_date"]))
        out.append({"day": f"d{i + 1:04d}", "ts": day.isoformat(),
                    **{p: round(float(x[p]), 6) for p in POLLSTERS},
                    "approval": round(float(y), 6)})
    return pd.DataFrame(out)


def main(directory: Path = HERE) -> None:
    frame = table()
    stream = directory / "stream"
    stream.mkdir(parents=True, exist_ok=True)
    frame.iloc[:SPLIT].to_csv(stream / "part-001.csv", index=False)
    frame.iloc[SPLIT:].to_csv(stream / "part-002.csv", index=False)


if __name__ == "__main__":
    main()
