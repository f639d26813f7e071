"""The detector protocol and its value types.

Detectors see numpy arrays only. A streaming detector watches one number per row
(error, loss, confidence or one feature); a windowed detector watches a table of
features against a reference window. Both report through :class:`DriftSignal`.

Row indices are the ingest sequence numbers the runtime hands in; detectors use them
only to report where a change was seen (``index``) and where it began (``onset``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Status = Literal["ok", "drift", "not_enough_data"]

STATE_VERSION = 1

MODEL_SIGNALS = ("error", "loss", "confidence")
"""Per-row signals the runtime derives from the model; anything else is a feature name."""


@dataclass(frozen=True)
class DriftSignal:
    """What a detector says after the values it has seen so far.

    Attributes
    ----------
    detector : str
        The detector's configured name (e.g. ``"adwin"``).
    signal : str
        What it watches: ``"error"``, ``"loss"``, ``"confidence"``, a feature name, or
        ``"features"`` for a windowed test over several features.
    status : {"ok", "drift", "not_enough_data"}
        ``"drift"`` is latched: it stays until :meth:`Detector.check` has reported it once.
    statistic : float or None
        The detector's statistic at the alarm (or the latest one); ``None`` if undefined.
    threshold : float or None
        The value the statistic is compared with.
    index : int or None
        Row index at which the alarm fired.
    onset : int or None
        Estimated row index where the change began.
    window : tuple of (int, int) or None
        First and last row index of the data the decision was made on.
    details : dict
        JSON-serializable extras, e.g. the per-feature table of a windowed test.
    """

    detector: str
    signal: str
    status: Status
    statistic: float | None = None
    threshold: float | None = None
    index: int | None = None
    onset: int | None = None
    window: tuple[int, int] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def drift(self) -> bool:
        return self.status == "drift"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form (``window`` becomes a list)."""
        out = asdict(self)
        out["window"] = list(self.window) if self.window is not None else None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftSignal:
        """Inverse of :meth:`to_dict`."""
        window = data.get("window")
        return cls(**{**data, "window": (int(window[0]), int(window[1])) if window else None})


def check_confidence_levels(warning: float, drift: float) -> None:
    """HDDM's levels: the warning's confidence must be looser (higher) than the drift's.

    Examples
    --------
    >>> check_confidence_levels(0.005, 0.001)  # river's defaults
    >>> check_confidence_levels(0.001, 0.005)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: warning_confidence 0.001 must be above drift_confidence 0.005: ...
    """
    if warning <= drift:
        raise ValueError(
            f"warning_confidence {warning:g} must be above drift_confidence "
            f"{drift:g}: the warning has to come before the drift"
        )


def check_stream_signal(signal: str, features: Sequence[str]) -> None:
    """Raise ``ValueError`` unless a streaming detector can watch ``signal``: one of
    :data:`MODEL_SIGNALS` or a feature name."""
    if signal not in MODEL_SIGNALS and signal not in features:
        raise ValueError(
            f"a streaming detector watches one of {', '.join(MODEL_SIGNALS)} or a feature "
            f"name, not {signal!r}"
        )


@runtime_checkable
class Detector(Protocol):
    """One drift detector.

    ``update`` may be called with a batch; a detection anywhere in the batch is latched
    until the next ``check``. ``state``/``load_state`` round-trip through JSON:
    the dict carries ``{"version": STATE_VERSION, ...}`` and nothing is pickled.
    """

    name: str
    signal: str

    def update(
        self, values: npt.NDArray[np.float64], index: npt.NDArray[np.int64] | None = None
    ) -> None:
        """Feed values (1-D for streaming detectors, 2-D rows x features for windowed
        ones) with their row indices (defaults to a running count)."""
        ...

    def check(self) -> DriftSignal:
        """Report and clear the latch."""
        ...

    def reset(self) -> None:
        """Forget everything seen, including the latch (the reference window stays)."""
        ...

    def state(self) -> dict[str, Any]:
        """JSON-serializable state with a ``version`` key."""
        ...

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state`; raises ``ValueError`` on a version mismatch."""
        ...


@runtime_checkable
class ReferenceDetector(Detector, Protocol):
    """A windowed detector: compares a bounded current window with a reference window."""

    def set_reference(
        self, values: npt.NDArray[np.float64], index: npt.NDArray[np.int64] | None = None
    ) -> None:
        """Replace the reference window (re-baselining after a promotion or rollback)."""
        ...
