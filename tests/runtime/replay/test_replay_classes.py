"""``driftloop replay`` over a table with class names (``classes: ["no", "yes"]``) and a
categorical column: the names are scored as the classes the daemon stores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from runtime.config import parse_config
from runtime.replay.compare import Options, run_schedule
from runtime.replay.engine import Schedule
from runtime.replay.stream import LoggedStream


def _table(n: int = 1200) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    plan = rng.choice(["basic", "pro", "team"], n)
    tenure = rng.integers(1, 61, n).astype(float)
    churn = (plan == "basic") & (tenure < 30)
    return pd.DataFrame({"plan": plan, "tenure": tenure,
                         "churned": np.where(churn, "yes", "no")})


@pytest.mark.slow  # a bootstrap and a replay: ~50 s on the loaded 2-core VM
def test_class_names_are_replayed_and_scored(tmp_path: Path) -> None:
    cfg = parse_config({
        "state_dir": str(tmp_path / "state"),
        "schema": {"features": [{"name": "plan", "type": "categorical"}, "tenure"],
                   "label": "churned", "classes": ["no", "yes"]},
        "source": {"kind": "directory", "path": str(tmp_path)},
        "model": {"kind": "mlp", "hidden": [16]},
        "bootstrap": {"rows": 400, "epochs": 20},
        "detectors": [{"kind": "adwin", "signal": "error"}],
    })
    frame = _table()
    stream = LoggedStream(frame, cfg.schema)
    assert list(stream.y[:5]) == [int(v == "yes") for v in frame["churned"][:5]]
    r = run_schedule(cfg, stream, Schedule("never", gate=False), Options(batch_rows=200))
    assert r.accuracy > 0.9  # the rule is learnable from the plan and the tenure
    bad = frame.assign(churned=frame["churned"].where(frame.index != 7, "maybe"))
    with pytest.raises(ValueError, match=r"1 row\(s\) have a label outside .*'maybe'"):
        LoggedStream(bad, cfg.schema)
