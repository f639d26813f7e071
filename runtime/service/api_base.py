"""What every router of the HTTP API shares: the host, errors, limits, auth.

:class:`ApiError` (status + one clear line) is what handlers raise; :func:`install_errors`
answers it, validation errors (422), framework errors, a full disk (507/503) and anything
unexpected (500, logged: a bug) as JSON ``{"error": "<one line>", "detail": …}``.
:class:`BodyLimit` refuses oversized bodies (413) and :class:`Counting` counts requests for
/metrics. ``Auth``, ``IdemKey`` and ``Version`` are the parameters endpoints declare.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, Header, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.config import DriftloopConfig
from runtime.intake.http_body import body_problem
from runtime.intake.ingest import Accepted, Ingestor
from runtime.service.api_schema import IDEMPOTENCY, EventOut
from runtime.service.prometheus import HttpMetrics
from runtime.store.db import Database, to_json
from runtime.store.disk import storage_problem
from runtime.store.events import Event, EventLog
from runtime.store.unit import Unit
from runtime.store.versions import IntegrityError, ModelVersion, Registry

log = logging.getLogger(__name__)


class Host(Protocol):
    """What the API needs from the daemon that serves it."""

    cfg: DriftloopConfig
    db: Database
    events: EventLog
    registry: Registry
    ingestor: Ingestor
    unit: Unit | None

    def submit(self, acc: Accepted) -> None:
        """Hand rows ingested over HTTP to the detectors."""
        ...

    def runtime_status(self) -> dict[str, Any]:
        """Live facts of this process: leader, instance, detector statistics, queue."""
        ...


class ApiError(Exception):
    """A refusal: the HTTP status and one clear line saying why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` (413), declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await _send_json(send, 413, self._message())
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:  # re-raised as it is by FastAPI's body parsing
                    raise StarletteHTTPException(413, self._message())
            return msg

        await self.app(scope, limited, send)

    def _message(self) -> str:
        return f"request body too large (limit {self.max_bytes} bytes)"


class Counting:
    """Requests by route and status, and their latency, for /metrics (plain ASGI: a
    ``BaseHTTPMiddleware`` would add a task and a body stream to every request)."""

    def __init__(self, app: ASGIApp, http: HttpMetrics) -> None:
        self.app = app
        self.http = http

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # unless a response starts: an exception escaped

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            name = getattr(scope.get("route"), "path", "unmatched")  # set by the router
            self.http.requests.labels(scope["method"], name, str(status)).inc()
            self.http.latency.labels(name).observe(time.perf_counter() - start)


async def _send_json(send: Send, status: int, message: str) -> None:
    body = to_json({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _error(status: int, message: str, detail: Any = None, **headers: str) -> JSONResponse:
    content: dict[str, Any] = {"error": message}
    if detail is not None:
        content["detail"] = detail
    return JSONResponse(content, status_code=status, headers=headers or None)


def _validation_detail(err: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg")), "type": e.get("type")}
        for e in err.errors()[:20]
    ]


def _validation_line(err: RequestValidationError) -> str:
    errors = err.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"invalid request: {where}: {first.get('msg')}{more}"


def install_errors(app: FastAPI) -> None:
    """Answer every error as one JSON line with its status (never a traceback)."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        extra = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        return _error(exc.status, exc.message, **extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_line(exc), _validation_detail(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code == 404:
            message = "no such endpoint"
        elif exc.status_code == 405:
            message = "method not allowed on this endpoint"
        elif exc.status_code == 400 and (problem := body_problem(exc.__cause__)):
            return _error(422, problem)  # JSON FastAPI could not decode, answered as ingest's
        elif exc.status_code == 400:
            message = f"bad request: {exc.detail}"
        return _error(exc.status_code, message, **(exc.headers or {}))

    @app.exception_handler(DBAPIError)
    @app.exception_handler(OSError)
    async def _storage(request: Request, exc: Exception) -> JSONResponse:
        """A full disk or read-only state (logged once by ``Database.disk``): 507 or 503."""
        if (disk := storage_problem(exc)) is None:
            return await _bug(request, exc)
        return _error(disk.status, f"cannot store: {disk.message}", **{"Retry-After": "10"})

    @app.exception_handler(Exception)
    async def _bug(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in the API")
        return _error(500, f"internal error ({type(exc).__name__}); see the daemon's log")


def event_out(e: Event) -> EventOut:
    """An event as the API serves it (its payload as stored)."""
    return EventOut(**e.to_dict())


def get_version(registry: Registry, version: str) -> ModelVersion:
    """``version``'s record, or 404."""
    try:
        return registry.get(version)
    except KeyError:
        raise ApiError(404, f"unknown model version {version!r}") from None


def refusable(action: Callable[[], Event]) -> Event:
    """Run a registry action; its refusals become 409 (404 for an unknown name)."""
    try:
        return action()
    except (ValueError, IntegrityError) as err:
        raise ApiError(409, str(err)) from None
    except KeyError as err:  # str() would add quotes around the message
        raise ApiError(404, str(err.args[0]) if err.args else "not found") from None


# -- dependencies (module level: FastAPI resolves annotations in module globals) ---------
_bearer = HTTPBearer(auto_error=False)


async def _authorized(  # async: no thread hop for a comparison of two strings
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    token: str | None = request.app.state.token
    if token is None:
        raise ApiError(403, "mutations are disabled: the daemon was started without a token")
    if creds is None:
        raise ApiError(401, "this endpoint needs 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(creds.credentials.encode(), token.encode()):
        raise ApiError(403, "the bearer token is not valid")


Auth = Annotated[None, Depends(_authorized)]
IdemKey = Annotated[
    str | None, Header(alias="Idempotency-Key", pattern=IDEMPOTENCY, max_length=100)
]
Version = Annotated[str, PathParam(pattern=r"^v[1-9][0-9]{0,8}$", description="a version like v3")]
