"""Sending one hook delivery: a signed webhook POST, or a command with the body on stdin.

:func:`send` never raises for a failed delivery: it returns a :class:`Sent` that says
whether it went through and why not, so the dispatcher decides about retries.

The signature is GitHub's scheme: ``X-Driftloop-Signature-256: sha256=<hex>``, the
HMAC-SHA256 of the exact body bytes under the hook's secret; a receiver recomputes it
(:func:`signature`) and compares in constant time. ``X-Driftloop-Delivery`` names the
delivery (``<hook>:<event id>``, the same on a retry) for deduplication.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from runtime.handoff.settings import HookConfig

__all__ = ["SIGNATURE_HEADER", "Sent", "send", "signature"]

SIGNATURE_HEADER = "X-Driftloop-Signature-256"
USER_AGENT = "driftloop-hooks/1"


@dataclass(frozen=True)
class Sent:
    """The outcome of one attempt."""

    ok: bool
    detail: dict[str, Any]
    """``status`` (HTTP) or ``exit`` (command), and ``seconds``."""
    reason: str = ""


def signature(secret: str, body: bytes) -> str:
    """The header value for ``body``: ``sha256=`` and the hex HMAC-SHA256.

    Examples
    --------
    >>> signature("s3cret", b'{"a":1}')[:15]
    'sha256=5910e620'
    """
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def send(hook: HookConfig, body: bytes, secret: str | None) -> Sent:
    """One attempt at delivering ``body`` (JSON) through ``hook``."""
    began = time.monotonic()
    out = _post(hook, body, secret) if hook.url is not None else _run(hook, body)
    return Sent(out.ok, {**out.detail, "seconds": round(time.monotonic() - began, 3)}, out.reason)


def _post(hook: HookConfig, body: bytes, secret: str | None) -> Sent:
    assert hook.url is not None
    delivery = json.loads(body).get("delivery", "")
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               "X-Driftloop-Delivery": str(delivery)}
    if secret is not None:
        headers[SIGNATURE_HEADER] = signature(secret, body)
    request = urllib.request.Request(hook.url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=hook.timeout_seconds) as response:
            status = int(response.status)
    except urllib.error.HTTPError as err:
        return Sent(False, {"status": err.code}, f"HTTP {err.code} from {hook.url}")
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        return Sent(False, {}, f"cannot reach {hook.url}: {reason}")
    if not 200 <= status < 300:
        return Sent(False, {"status": status}, f"HTTP {status} from {hook.url}")
    return Sent(True, {"status": status})


def _run(hook: HookConfig, body: bytes) -> Sent:
    assert hook.command is not None
    try:
        done = subprocess.run(hook.command, input=body, capture_output=True,
                              timeout=hook.timeout_seconds, check=False)
    except subprocess.TimeoutExpired:
        return Sent(False, {}, f"{hook.command[0]} ran past {hook.timeout_seconds:g} s")
    except OSError as err:
        return Sent(False, {}, f"cannot run {hook.command[0]}: {err.strerror or err}")
    if done.returncode != 0:
        err_line = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        return Sent(False, {"exit": done.returncode},
                    f"{hook.command[0]} exited {done.returncode}: {err_line[0][:200]}".rstrip(": "))
    return Sent(True, {"exit": 0})
