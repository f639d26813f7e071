"""The backlog: batches held while a retrain runs come back as they were accepted."""

from __future__ import annotations

import numpy as np
import pandas as pd

from runtime.config import DriftloopConfig
from runtime.intake.ingest import Accepted, Ingestor
from runtime.intake.sources import Batch
from runtime.monitoring.backlog import Backlog
from runtime.store.db import Database
from runtime.store.events import EventLog
from tests.conftest import FEATURES


def _frame(n: int, start: int, labelled: bool) -> pd.DataFrame:
    rng = np.random.default_rng(start)
    frame = pd.DataFrame(rng.uniform(0, 100, size=(n, len(FEATURES))), columns=FEATURES)
    frame["class"] = rng.integers(0, 2, n) if labelled else None
    frame["row_id"] = [f"r{start + i}" for i in range(n)]
    return frame


def test_held_batches_come_back_in_order_as_accepted_until_stopped(
    small_cfg: DriftloopConfig,
) -> None:
    small_cfg.state_dir.mkdir(parents=True)
    db = Database.for_state_dir(small_cfg.state_dir, None)
    db.create_all()
    ing = Ingestor(db, small_cfg.schema, EventLog(db))
    backlog = Backlog(db, len(FEATURES))
    accepted = [
        ing.ingest(Batch(origin="a", frame=_frame(4, 0, labelled=True))),
        ing.ingest(Batch(origin="b", frame=_frame(3, 4, labelled=False))),
        ing.ingest(Batch(origin="c", frame=pd.DataFrame({"row_id": ["r5"], "class": [1]}))),
        ing.ingest(Batch(origin="d", frame=_frame(2, 7, labelled=True))),
    ]
    for acc in accepted:
        backlog.hold(acc)
    assert len(backlog) == 4 and backlog.rows == 9
    fed: list[Accepted] = []
    # a retrain is requested while the second batch is fed: the feed stops after it
    assert backlog.release(fed.append, stop=lambda: len(fed) == 2) == 7
    assert len(backlog) == 2
    assert backlog.release(fed.append, stop=lambda: False) == 2 and not backlog
    for got, acc in zip(fed, accepted, strict=True):
        assert got.seqs.tolist() == acc.seqs.tolist()
        assert np.allclose(got.x, acc.x) and got.y.tolist() == acc.y.tolist()
        assert got.labels_joined.tolist() == acc.labels_joined.tolist()
        assert got.label_seq == acc.label_seq
    # r5's label came late: its row is fed unlabelled, its label where it was joined
    assert fed[1].y.tolist() == [-1, -1, -1] and fed[2].labels_joined.tolist() == [6]
    db.dispose()
