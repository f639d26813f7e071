"""The live progress display of ``driftloop run`` on a terminal.

A status line at the bottom of the terminal, redrawn a few times a second by a thread:
rows ingested (a bar when the source's length is known), the rate, the champion, and
while a retrain runs its epoch and loss (read from ``retrain.progress`` events). The
daemon's other report lines (drifts, retrains, gate checks, promotions) are printed
above it as usual; its per-batch ``ingest`` lines are folded into the bar. Used only
when stdout is a TTY: piped output keeps the plain lines.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections import deque
from types import TracebackType
from typing import Any, Protocol, TextIO

from runtime.store import events as ev
from runtime.store.events import EventLog

__all__ = ["DaemonView", "LiveProgress", "RunState", "bar"]

_FOLDED = re.compile(r"^(ingest |bootstrap: \d+/\d+ labelled rows collected)")


class RunState(Protocol):
    """What the display reads from the running daemon (plain attribute reads)."""

    @property
    def rows_seen(self) -> int: ...

    def retraining(self) -> str | None:
        """The trigger id of the retrain running now, if any."""
        ...

    def champion(self) -> str | None: ...


class DaemonView:
    """:class:`RunState` of a :class:`runtime.daemon.Daemon` (read from another thread:
    each read is one attribute, so a stale value at worst)."""

    def __init__(self, daemon: Any) -> None:
        self._d = daemon

    @property
    def rows_seen(self) -> int:
        return int(self._d.rows_seen)

    def retraining(self) -> str | None:
        trigger = self._d.runner.trigger_id
        return None if trigger is None else str(trigger)

    def champion(self) -> str | None:
        unit = self._d.unit
        return None if unit is None else str(unit.version)


def bar(fraction: float, width: int) -> str:
    """A text progress bar.

    Examples
    --------
    >>> bar(0.5, 10)
    '█████░░░░░'
    """
    fraction = min(max(fraction, 0.0), 1.0)
    full = round(fraction * width)
    return "█" * full + "░" * (width - full)


class LiveProgress:
    """Status line + printed report lines; use as a context manager around the run.

    Parameters
    ----------
    stream
        The terminal (``sys.stdout``).
    total_rows
        The source's length if known (synthetic sources), for the bar.
    epochs
        The retrain budget's epochs, if set.
    """

    def __init__(
        self, stream: TextIO, total_rows: int | None, epochs: int | None, interval: float = 0.25
    ) -> None:
        self.stream = stream
        self.events: EventLog | None = None
        self.total_rows = total_rows
        self.epochs = epochs
        self.interval = interval
        self.state: RunState | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status = ""
        self._note = ""
        self._samples: deque[tuple[float, int]] = deque()
        self._last_event = 0
        self._retrain: tuple[str, str] = ("", "")  # trigger, "epoch 3/30 loss 0.12"
        self._route = ""

    def attach(self, events: EventLog, state: RunState) -> None:
        """What to watch: the state's event log (for epochs) and the daemon."""
        self.events, self.state = events, state

    # -- the Reporter ------------------------------------------------------------------
    def line(self, text: str) -> None:
        """A report line from the daemon: progress lines update the status, others print."""
        if text.startswith("bootstrap"):
            self._note = text.removesuffix(" collected")
        if _FOLDED.match(text):
            return
        with self._lock:
            self._clear()
            self.stream.write(text + "\n")
            self._draw()

    # -- the status line ---------------------------------------------------------------
    def _clear(self) -> None:
        if self._status:
            self.stream.write("\r\x1b[2K")

    def _draw(self) -> None:
        self._status = self._render()
        self.stream.write(self._status)
        self.stream.flush()

    def _render(self) -> str:
        cols = shutil.get_terminal_size((100, 20)).columns
        st = self.state
        rows = st.rows_seen if st else 0
        now = time.monotonic()
        self._samples.append((now, rows))
        while len(self._samples) > 2 and now - self._samples[0][0] > 5.0:
            self._samples.popleft()  # the rate over the last few seconds, not since start
        t0, r0 = self._samples[0]
        rate = (rows - r0) / (now - t0) if now > t0 else 0.0
        if self.total_rows:
            frac = rows / self.total_rows
            head = f"ingest {bar(frac, 20)} {rows:,}/{self.total_rows:,} rows ({100 * frac:.0f}%)"
        else:
            head = f"ingest {rows:,} rows"
        parts = [head, f"{rate:,.0f} rows/s", f"champion {st.champion() if st else None}"]
        trigger = st.retraining() if st else None
        if trigger:
            detail = self._retrain[1] if self._retrain[0] == trigger else "starting"
            parts.append(f"retrain {trigger} {self._route}: {detail}")
        elif self._note and (st is None or st.champion() is None):
            parts.append(self._note)
        text = "  ".join(parts)
        return text if len(text) < cols else text[: max(cols - 2, 10)] + "…"

    def _poll_retrain(self) -> None:
        st = self.state
        trigger = st.retraining() if st else None
        if not trigger or self.events is None:
            return
        try:
            new = self.events.list(
                kinds=[ev.RETRAIN_STARTED, ev.RETRAIN_PROGRESS], after_id=self._last_event
            )
        except Exception:  # the database is closing: the display is best effort
            return
        for e in new:
            self._last_event = e.id
            p = e.payload
            if isinstance(p, ev.RetrainStarted) and p.trigger_id == trigger:
                self._route = f"{p.champion}→{p.candidate}"
                self._retrain = (trigger, "starting")
            elif isinstance(p, ev.RetrainProgress) and p.trigger_id == trigger:
                epoch = int(p.epoch)
                of = f"/{self.epochs}" if self.epochs else ""
                prog = f"{bar(epoch / self.epochs, 10)} " if self.epochs else ""
                self._retrain = (trigger, f"{prog}epoch {epoch}{of} loss {p.loss:.4f}")

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._poll_retrain()
            with self._lock:
                self._clear()
                self._draw()

    def __enter__(self) -> LiveProgress:
        last = self.events.list(descending=True, limit=1) if self.events else []
        self._last_event = last[0].id if last else 0
        self._thread = threading.Thread(target=self._loop, name="driftloop-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        with self._lock:
            self._clear()
            self._status = ""
            self.stream.flush()
