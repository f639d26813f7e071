"""The single-instance lock: one daemon per state directory (``<state_dir>/lock``, flock)."""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path
from typing import IO


def default_instance() -> str:
    """``host-pid``: unique among the daemons of one deployment."""
    return f"{socket.gethostname()}-{os.getpid()}"


def lock_dir(state_dir: Path, instance: str | None) -> Path:
    """Where a daemon's lock lives: in the state directory, or with ``leader:`` (daemons
    sharing one database share ``state_dir``) in its instance's own directory under it."""
    return state_dir if instance is None else state_dir / "instances" / instance


class AlreadyRunning(RuntimeError):
    """Another daemon holds the lock."""


class StateLock:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "lock"
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        if self._fh is not None:
            return  # held by this process already (the CLI takes it before the daemon)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            pid = fh.read().strip() or "unknown"
            fh.close()
            raise AlreadyRunning(
                f"another driftloop daemon (pid {pid}) is running on {self.path.parent}"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(self, *_: object) -> None:
        self.release()

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def held_by_other(self) -> bool:
        """True if some other process holds the lock now (used by read-only commands)."""
        if not self.path.exists():
            return False
        with self.path.open("a+") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return False
