"""The hook dispatcher: a thread that turns committed events into deliveries.

Every ``poll_seconds`` it enqueues the deliveries owed for new events
(:class:`~runtime.handoff.outbox.Outbox`) and hands the due ones to a small pool of
sender threads, so a slow or unreachable receiver delays only its own deliveries: the
daemon's loop never waits on a hook. Only the leader dispatches (daemons sharing a
database share the outbox).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from runtime.handoff.hooks import send
from runtime.handoff.outbox import Delivery, Outbox
from runtime.handoff.settings import HookConfig
from runtime.store.db import Database
from runtime.store.events import EventLog

__all__ = ["Dispatcher", "HookError", "secrets"]

log = logging.getLogger(__name__)


class HookError(RuntimeError):
    """Hooks that cannot start (a secret's variable unset); one line."""


def secrets(hooks: Sequence[HookConfig], env: Mapping[str, str]) -> list[str | None]:
    """Each hook's signing secret from its ``secret_env``; an unset or empty one is an
    error (a receiver checking signatures would refuse every delivery)."""
    out: list[str | None] = []
    for hook in hooks:
        if hook.secret_env is None:
            out.append(None)
            continue
        value = env.get(hook.secret_env, "").strip()
        if not value:
            raise HookError(f"hook {hook.name or hook.url}: ${hook.secret_env} (its secret_env) "
                            "is unset or empty")
        out.append(value)
    return out


class Dispatcher:
    """Enqueue and deliver ``hooks`` in the background until :meth:`stop`."""

    def __init__(
        self,
        db: Database,
        events: EventLog,
        hooks: Sequence[HookConfig],
        *,
        is_leader: Callable[[], bool] = lambda: True,
        poll_seconds: float = 0.2,
        env: Mapping[str, str] | None = None,
        workers: int = 4,
    ) -> None:
        self.outbox = Outbox(db, events, hooks)
        self._secrets = dict(zip(self.outbox.hooks, secrets(hooks, env or os.environ),
                                 strict=True))
        self.is_leader = is_leader
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="driftloop-hook")
        self._lock = threading.Lock()
        self._in_flight: set[int] = set()
        # one step at a time: the thread's and stop()'s last pass would otherwise both
        # read a delivery as due before either marked it in flight, and send it twice
        self._stepping = threading.Lock()

    def start(self) -> None:
        """Set the cursor (first start: the newest event) and start the thread."""
        self.outbox.start()
        self._thread = threading.Thread(target=self._run, name="driftloop-hooks", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look for new events now (after a commit worth telling), not at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 5.0, drain_seconds: float = 2.0) -> None:
        """Stop polling after one last pass over the new events; deliveries under way
        get ``drain_seconds`` (what is still owed stays pending for the next start)."""
        self._wake.set()
        if self._thread is not None:
            self._thread.join(0)  # it may be mid-step; the last pass below is ours
        try:
            self.step()
        except Exception:
            log.exception("last hook dispatch failed")
        deadline = time.monotonic() + drain_seconds
        while time.monotonic() < deadline:
            with self._lock:
                if not self._in_flight:
                    break
            time.sleep(0.02)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # a database hiccup must not end the thread
                log.exception("hook dispatch failed; retrying")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def step(self) -> int:
        """Enqueue new deliveries and start the due ones; returns how many started."""
        with self._stepping:
            return self._step()

    def _step(self) -> int:
        if not self.is_leader():
            return 0
        self.outbox.enqueue()
        with self._lock:
            busy = sorted(self._in_flight)
        started = 0
        for d in self.outbox.due(exclude=busy):
            with self._lock:
                self._in_flight.add(d.id)
            try:
                self._pool.submit(self._deliver, d)
            except RuntimeError:  # shutting down: it stays pending
                with self._lock:
                    self._in_flight.discard(d.id)
                break
            started += 1
        return started

    def _deliver(self, d: Delivery) -> None:
        try:
            sent = send(self.outbox.hooks[d.hook], d.body, self._secrets[d.hook])
            if sent.ok:
                self.outbox.delivered(d, sent.detail)
                log.info("hook %s delivered %s (event %d)", d.hook, d.kind, d.event_id)
            else:
                final = self.outbox.attempt_failed(d, sent.reason)
                if final is not None:
                    log.error("hook %s failed for good on event %d: %s", d.hook, d.event_id,
                              sent.reason)
                else:
                    log.warning("hook %s attempt %d on event %d failed: %s", d.hook,
                                d.attempts + 1, d.event_id, sent.reason)
        except Exception:
            log.exception("hook %s: recording the delivery of event %d failed", d.hook,
                          d.event_id)
        finally:
            with self._lock:
                self._in_flight.discard(d.id)
            self._wake.set()
