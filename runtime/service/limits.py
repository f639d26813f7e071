"""Header limits of the API: :class:`HeaderLimit` answers 431 before any route runs.

uvicorn's HTTP parser (httptools) bounds neither the size nor the number of request
headers, so a client could make every request carry megabytes of them; this plain ASGI
middleware refuses such requests with one JSON line, as the other limits do.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send


class HeaderLimit:
    """Refuse requests whose headers exceed ``max_bytes`` in all or ``max_count`` (431)."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_count: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_count = max_count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope.get("headers", [])
            problem = None
            if len(headers) > self.max_count:
                problem = f"too many request headers: {len(headers)} (limit {self.max_count})"
            else:
                size = sum(len(k) + len(v) + 4 for k, v in headers)
                if size > self.max_bytes:
                    problem = f"request headers too large: {size} bytes (limit {self.max_bytes})"
            if problem is not None:
                await _refuse(send, problem)
                return
        await self.app(scope, receive, send)


async def _refuse(send: Send, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 431,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
