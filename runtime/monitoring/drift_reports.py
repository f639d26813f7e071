"""Drift reports: the one module that imports evidently.

For each feature-drift event the daemon writes an evidently HTML report (DataDriftPreset
with the same statistical test as the detector) under ``<state_dir>/reports/`` and links
it from the event's payload.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

STATTESTS = {
    "ks": "ks",
    "cvm": "cramer_von_mises",
    "chi2": "chisquare",
    "psi": "psi",
    "wasserstein": "wasserstein",
    "jensenshannon": "jensenshannon",
}
"""driftloop's windowed test kinds and evidently's names for the same tests (any other
name is passed to evidently as is; ``mmd`` and ``classifier`` have no per-feature
counterpart and get evidently's default per column)."""
CATEGORY_STATTESTS = ("chisquare", "psi", "jensenshannon")
"""evidently's tests that compare category frequencies as driftloop's tests do."""


def write_feature_drift_report(state_dir: Path, reference: np.ndarray, current: np.ndarray,
                               features: list[str], stattest: str, event_hint: str,
                               categorical: list[str] | None = None) -> Path:
    """Write ``<state_dir>/reports/drift-<event_hint>.html`` and return its path.

    ``reference`` and ``current`` are rows x ``features``; ``stattest`` is a driftloop
    test kind (see :data:`STATTESTS`) or an evidently stattest name. The file appears
    atomically (written to a temporary name, then renamed). ``categorical`` columns
    (category codes) are compared as categories.
    """
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), len(features))
    cur = np.asarray(current, dtype=np.float64).reshape(len(current), len(features))
    if not len(ref) or not len(cur):
        raise ValueError("a drift report needs rows in both the reference and the window")
    method = None if stattest in {"mmd", "classifier"} else STATTESTS.get(stattest, stattest)
    cats = [f for f in features if f in (categorical or [])]
    definition = DataDefinition(
        numerical_columns=[f for f in features if f not in cats], categorical_columns=cats
    )
    # as the detectors do: categories by their counts (chi-squared unless the test has a
    # statistic of frequencies), numbers by the test itself; evidently's chi-squared takes
    # categories only, so numbers get its default there
    cat_method = method if method in CATEGORY_STATTESTS else "chisquare"
    num_method = None if method == "chisquare" else method
    report = Report([DataDriftPreset(num_method=num_method, cat_method=cat_method)])
    snapshot = report.run(
        Dataset.from_pandas(pd.DataFrame(cur, columns=features), data_definition=definition),
        Dataset.from_pandas(pd.DataFrame(ref, columns=features), data_definition=definition),
    )
    out_dir = Path(state_dir) / "reports"
    out_dir.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", event_hint).strip("-") or "event"
    path = out_dir / f"drift-{safe}.html"
    tmp = path.with_suffix(".html.tmp")
    snapshot.save_html(str(tmp))
    os.replace(tmp, path)
    return path
