"""``bootstrap.patience``: v1 of a table with typed columns stops training once its
validation score stops improving (the best epoch kept); ``None``, or a schema of plain
numbers, trains every epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from runtime.config import parse_config
from runtime.intake.ingest import Ingestor
from runtime.intake.sources import Batch
from runtime.store import events as ev
from runtime.store.db import Database
from runtime.store.events import EventLog
from runtime.store.rows import labelled_rows
from runtime.store.versions import Registry
from runtime.training.bootstrap import bootstrap_from_rows

EPOCHS = 40


def _epochs(tmp: Path, features: list[Any], patience: int | str | None) -> int:
    """Epochs v1 trained on 300 rows whose label is noise (``patience`` ``"default"``:
    the config's default)."""
    boot: dict[str, Any] = {"rows": 300, "epochs": EPOCHS}
    if patience != "default":
        boot["patience"] = patience
    cfg = parse_config({
        "state_dir": str(tmp / "state"), "seed": 1,
        "schema": {"features": features, "label": "y", "classes": [0, 1]},
        "source": {"kind": "directory", "path": str(tmp)},
        "model": {"kind": "mlp", "hidden": [16]},
        "bootstrap": boot,
        "detectors": [{"kind": "adwin", "signal": "error"}],
    })
    cfg.state_dir.mkdir(parents=True)
    db = Database.for_state_dir(cfg.state_dir, None)
    db.create_all()
    events = EventLog(db)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"row_id": [f"r{i}" for i in range(300)],
                          "plan": rng.choice(["basic", "pro", "team"], 300),
                          "tenure": rng.normal(size=300), "y": rng.integers(0, 2, 300)})
    frame = frame[["row_id", *cfg.schema.features, "y"]]
    assert Ingestor(db, cfg.schema, events).ingest(Batch(origin="rows", frame=frame)).count == 300
    seqs, x, y = labelled_rows(db, len(cfg.schema.features), since=0)
    registry = Registry(db, cfg.state_dir / "models", events)
    bootstrap_from_rows(cfg, db, events, registry, x, y, first_row=int(seqs[0]),
                        last_row=int(seqs[-1]))
    got = len(events.list(kinds=[ev.RETRAIN_PROGRESS], limit=1000))
    db.dispose()
    return got


TYPED = [{"name": "plan", "type": "categorical"}, "tenure"]


@pytest.mark.parametrize(("features", "patience", "stops"), [
    (TYPED, "default", True), (TYPED, None, False), (["tenure"], "default", False)],
    ids=["typed", "typed-patience-none", "plain-numbers"])
def test_v1_of_a_typed_table_stops_when_validation_stops_improving(
    tmp_path: Path, features: list[Any], patience: int | str | None, stops: bool
) -> None:
    epochs = _epochs(tmp_path, features, patience)
    assert (epochs < EPOCHS) if stops else (epochs == EPOCHS)
