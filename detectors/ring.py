"""A bounded first-in-first-out store of the most recent rows and their row indices."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int64]


class Ring:
    """The last ``capacity`` rows pushed, oldest first, each with its row index.

    Rows are scalars (``width=None``) or vectors of ``width`` values. Storage is one
    buffer of twice the capacity: :meth:`extend` writes at the end and compacts only when
    the end is reached, so pushing costs amortised O(rows pushed) and :meth:`values` and
    :meth:`index` are contiguous views (valid until the next :meth:`extend`).

    Examples
    --------
    >>> import numpy as np
    >>> r = Ring(3)
    >>> r.extend(np.array([1.0, 2.0]), np.array([10, 11]))
    >>> r.extend(np.array([3.0, 4.0]), np.array([12, 13]))
    >>> r.values().tolist(), r.index().tolist()
    ([2.0, 3.0, 4.0], [11, 12, 13])
    """

    def __init__(self, capacity: int, width: int | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self.width = width
        shape: tuple[int, ...] = (2 * capacity,) if width is None else (2 * capacity, width)
        self._values: FloatArray = np.empty(shape, dtype=np.float64)
        self._index: IndexArray = np.empty(2 * capacity, dtype=np.int64)
        self._start = 0
        self._end = 0

    def __len__(self) -> int:
        return self._end - self._start

    def values(self) -> FloatArray:
        return self._values[self._start : self._end]

    def index(self) -> IndexArray:
        return self._index[self._start : self._end]

    def clear(self) -> None:
        self._start = self._end = 0

    def extend(self, values: FloatArray, index: IndexArray) -> None:
        """Append rows (``len(values) == len(index)``), dropping the oldest beyond capacity."""
        n = len(index)
        cap = self.capacity
        if n == 0:
            return
        if n >= cap:
            self._values[:cap] = values[n - cap :]
            self._index[:cap] = index[n - cap :]
            self._start, self._end = 0, cap
            return
        if self._end + n > 2 * cap:
            keep = min(len(self), cap - n)
            src = self._end - keep
            self._values[:keep] = self._values[src : self._end]
            self._index[:keep] = self._index[src : self._end]
            self._start, self._end = 0, keep
        self._values[self._end : self._end + n] = values
        self._index[self._end : self._end + n] = index
        self._end += n
        self._start = max(self._start, self._end - cap)

    def state(self) -> dict[str, Any]:
        """JSON-serializable contents; NaN becomes ``None``."""
        values = self.values()
        nan = np.isnan(values)
        if nan.any():
            obj = values.astype(object)
            obj[nan] = None
            listed: list[Any] = obj.tolist()
        else:
            listed = values.tolist()
        return {"values": listed, "index": self.index().tolist()}

    def load_state(self, state: dict[str, Any]) -> None:
        """Replace the contents with :meth:`state`'s (``None`` becomes NaN)."""
        index = np.asarray(state["index"], dtype=np.int64).reshape(-1)
        shape = (len(index),) if self.width is None else (len(index), self.width)
        values = np.array(state["values"], dtype=np.float64).reshape(shape)
        self.clear()
        self.extend(values, index)
