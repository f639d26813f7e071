"""The inbox between the API's threads and the daemon's step."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from runtime.config import ApiConfig
from runtime.intake.inbox import Inbox, merge
from runtime.intake.ingest import Accepted
from runtime.service.server import ServerError, resolve_token


def _acc(seqs: list[int]) -> Accepted:
    s = np.array(seqs, dtype=np.int64)
    return Accepted(seqs=s, x=s[:, None].astype(float), y=s % 2, row_ids=[f"r{i}" for i in seqs])


def test_merge_orders_rows_by_seq() -> None:
    joined = Accepted(
        seqs=np.zeros(0, np.int64),
        x=np.zeros((0, 1)),
        y=np.zeros(0, np.int64),
        row_ids=[],
        labels_joined=np.array([2, 1]),
    )
    m = merge([_acc([4, 5]), _acc([1, 3]), joined], 1)
    assert m.seqs.tolist() == [1, 3, 4, 5]
    assert m.x[:, 0].tolist() == [1, 3, 4, 5] and m.row_ids == ["r1", "r3", "r4", "r5"]
    assert m.labels_joined.tolist() == [1, 2]


def test_full_inbox_applies_back_pressure_then_counts_drops() -> None:
    box = Inbox(max_rows=3)
    assert box.put(_acc([1, 2, 3]))
    assert not box.put(_acc([4]), timeout=0.05)  # full: waited, then dropped
    assert box.dropped == 1
    done = threading.Event()

    def producer() -> None:
        box.put(_acc([5]), timeout=5)
        done.set()

    t = threading.Thread(target=producer)
    t.start()
    assert not done.wait(0.1)  # blocked while full
    assert [a.seqs.tolist() for a in box.drain()] == [[1, 2, 3]]
    t.join(5)
    assert done.is_set() and box.rows == 1
    box.close()
    assert not box.put(_acc([6]))


def test_an_api_without_its_token_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRIFTLOOP_TOKEN", raising=False)
    with pytest.raises(ServerError, match="DRIFTLOOP_TOKEN"):
        resolve_token(ApiConfig())
    monkeypatch.setenv("DRIFTLOOP_TOKEN", " abc ")
    assert resolve_token(ApiConfig()) == "abc"
    assert resolve_token(ApiConfig(token_env=None)) is None
