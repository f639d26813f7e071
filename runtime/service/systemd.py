"""systemd's notify protocol (``Type=notify``, ``WatchdogSec=``) without extra dependencies.

systemd passes a datagram socket in ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the
abstract namespace) and, with a watchdog, the interval in ``$WATCHDOG_USEC``. Outside
systemd every call is a no-op, so the daemon calls these unconditionally.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


def notify(state: str, env: dict[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``, ``"WATCHDOG=1"``, ``"STOPPING=1"``).

    Returns True if a message was sent, False outside systemd or on a socket error (a
    failed notification is logged, never raised: it must not take the daemon down).
    """
    addr = (env if env is not None else os.environ).get("NOTIFY_SOCKET")
    if not addr:
        return False
    target = "\0" + addr[1:] if addr.startswith("@") else addr
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(target)
            sock.sendall(state.encode())
    except OSError as err:
        log.warning("sd_notify(%s) failed: %s", state.split("=")[0], err)
        return False
    return True


def watchdog_interval(env: dict[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half the configured timeout), or None when
    systemd watches no watchdog for this process."""
    e = env if env is not None else os.environ
    usec = e.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = e.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        seconds = int(usec) / 1e6
    except ValueError:
        return None
    return seconds / 2 if seconds > 0 else None


class Watchdog:
    """Pings systemd's watchdog at most every :func:`watchdog_interval` (a no-op without)."""

    def __init__(self) -> None:
        self.interval = watchdog_interval()
        self._last = 0.0

    def ping(self) -> None:
        if self.interval is not None and time.monotonic() - self._last >= self.interval:
            notify("WATCHDOG=1")
            self._last = time.monotonic()
