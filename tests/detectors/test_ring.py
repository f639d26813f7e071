"""The bounded FIFO that holds recent rows."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from detectors.ring import Ring


@given(st.integers(1, 8), st.lists(st.integers(0, 20), max_size=30))
def test_ring_holds_the_latest_rows(capacity: int, batches: list[int]) -> None:
    ring, pushed = Ring(capacity, width=2), 0
    for n in batches:
        rows = np.arange(pushed, pushed + n)
        ring.extend(np.stack([rows, -rows], axis=1).astype(float), rows)
        pushed += n
        expected = np.arange(max(0, pushed - capacity), pushed)
        assert len(ring) == len(expected) <= capacity
        assert ring.index().tolist() == expected.tolist()
        assert ring.values()[:, 1].tolist() == (-expected).tolist()


def test_ring_state_round_trip_keeps_nan() -> None:
    ring = Ring(4, width=2)
    ring.extend(np.array([[1.0, np.nan], [np.inf, 2.0]]), np.array([7, 8]))
    state = json.loads(json.dumps(ring.state()))
    assert state["values"] == [[1.0, None], [float("inf"), 2.0]]
    other = Ring(4, width=2)
    other.load_state(state)
    np.testing.assert_array_equal(other.values(), ring.values())
    empty = Ring(3)
    empty.load_state(Ring(3).state())
    assert len(empty) == 0
