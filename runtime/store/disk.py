"""Whether the state's storage takes writes: :func:`storage_problem` and :class:`DiskState`.

A full disk or a read-only state directory is not a bug of the daemon: it is named once
at error level, ingest answers it with a 507 or a 503 (the API), readiness goes false,
and the first write that succeeds again clears it, without a restart.
"""

from __future__ import annotations

import errno
import logging
import threading
from dataclasses import dataclass

log = logging.getLogger(__name__)

_FULL = ("database or disk is full", "no space left on device", "disk quota exceeded")
_READ_ONLY = ("readonly database", "read-only file system", "read only file system")


@dataclass(frozen=True)
class StorageProblem:
    """Why writes fail: ``full`` or ``read-only``, and one line saying so."""

    kind: str
    message: str

    @property
    def status(self) -> int:
        """The HTTP status a refused write gets: 507 for a full disk, 503 otherwise."""
        return 507 if self.kind == "full" else 503


def storage_problem(err: BaseException | None) -> StorageProblem | None:
    """The full disk or read-only storage behind ``err`` (a SQLAlchemy error, its
    driver's, an ``OSError``, or what caused one), or None if it is something else."""
    seen = 0
    while err is not None and seen < 8:
        seen += 1
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return StorageProblem("full", "the state directory's disk is full")
        if isinstance(err, OSError) and err.errno == errno.EROFS:
            return StorageProblem("read-only", "the state directory is read-only")
        text = str(err).lower()
        if any(m in text for m in _FULL):
            return StorageProblem("full", "the state directory's disk is full")
        if any(m in text for m in _READ_ONLY):
            return StorageProblem("read-only", "the state directory is read-only")
        err = getattr(err, "orig", None) or err.__cause__ or err.__context__
    return None


class DiskState:
    """The storage problem writes last met (None: writes succeed), logged once when it
    starts and once when it ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.problem: StorageProblem | None = None

    def failed(self, err: BaseException) -> StorageProblem | None:
        """Note a failed write; returns its storage problem (None: not one)."""
        problem = storage_problem(err)
        if problem is None:
            return None
        with self._lock:
            first, self.problem = self.problem is None, problem
        if first:
            log.error("%s: writes are refused until it recovers (%s)", problem.message, err)
        return problem

    def succeeded(self) -> None:
        """Note a write that committed: any storage problem is over."""
        if self.problem is None:
            return
        with self._lock:
            was, self.problem = self.problem, None
        if was is not None:
            log.warning("%s no longer: writes succeed again", was.message)
