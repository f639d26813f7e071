"""The review page served at ``/ui``: :func:`ui_router`, mounted on the API's app.

Same auth rules as the API: reading needs nothing; the page's approve, reject and
rollback buttons call the API's POST endpoints with the operator's bearer token, which
the page first checks with ``POST /ui/session`` (204 when valid). The token is the one
the API holds in ``app.state.token`` unless ``token`` is given.

Routes (under ``prefix``): ``GET /ui`` (the page; ``?limit=N`` shows the newest N events,
``kind``/``since``/``until``/``q`` set the initial filters), ``GET /ui/reports/{name}``
(a drift report from ``<state_dir>/reports/``), ``POST /ui/session``.
"""

from __future__ import annotations

import hmac
import re
import secrets
import threading
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from runtime.config import DriftloopConfig
from runtime.review.collect import Matrix, collect
from runtime.review.page import Live, render
from runtime.store.db import Database
from runtime.store.events import EventLog
from runtime.store.versions import Registry

__all__ = ["UiHost", "ui_router"]

REPORT_FILE = re.compile(r"^drift-[A-Za-z0-9_.-]{1,200}\.html$")
_UNSET: Any = object()
_bearer = HTTPBearer(auto_error=False)


class UiHost(Protocol):
    """What the page reads (the daemon, as the API's ``Host``, has all of it)."""

    cfg: DriftloopConfig
    db: Database
    events: EventLog
    registry: Registry


class _MatrixCache:
    """The forgetting matrix, recomputed only when the versions or their statuses change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[tuple[str, str], ...] | None = None
        self._value: tuple[Matrix | None, str] = (None, "")

    def get(self, key: tuple[tuple[str, str], ...]) -> tuple[Matrix | None, str] | None:
        with self._lock:
            return self._value if key == self._key else None

    def put(self, key: tuple[tuple[str, str], ...], value: tuple[Matrix | None, str]) -> None:
        with self._lock:
            self._key, self._value = key, value


def _headers(nonce: str) -> dict[str, str]:
    csp = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


def ui_router(
    host: UiHost, *, prefix: str = "/ui", token: str | None = _UNSET, max_events: int = 2000
) -> APIRouter:
    """A router serving the review page of ``host``'s state.

    Parameters
    ----------
    host
        Anything with ``cfg``, ``db``, ``events`` and ``registry`` (the daemon).
    prefix
        Where the page lives; the API is expected at the app's root.
    token
        The operator token; by default the app's ``app.state.token`` (the API's), so the
        page follows the API's auth rules. ``None`` means no actions at all.
    max_events
        The default number of newest events shown (``?limit=`` overrides, up to 20,000).
    """
    router = APIRouter(prefix=prefix, tags=["ui"])
    cache = _MatrixCache()

    def current_token(request: Request) -> str | None:
        if token is not _UNSET:
            return token
        found = getattr(request.app.state, "token", None)
        return found if isinstance(found, str) else None

    @router.get("", response_class=HTMLResponse, include_in_schema=False)
    def page(
        request: Request,
        limit: Annotated[int | None, Query(ge=1, le=20_000)] = None,
    ) -> HTMLResponse:
        key = tuple((v.version, v.status) for v in host.registry.list())
        cached = cache.get(key)
        review = collect(
            host.cfg.state_dir,
            host.db,
            host.events,
            host.registry,
            host.cfg,
            matrix=cached is None,
            max_events=limit or max_events,
        )
        if cached is None:
            cache.put(key, (review.matrix, review.matrix_note))
        else:
            review = replace(review, matrix=cached[0], matrix_note=cached[1])
        if hasattr(host, "runtime_status"):  # served by the daemon itself, so it runs
            review = replace(review, status={**review.status, "daemon_running": True})
        root = str(request.scope.get("root_path", "")).rstrip("/")
        nonce = secrets.token_urlsafe(16)
        live = Live(api_base=root, ui_base=root + prefix, nonce=nonce)
        html = render(review, report_href=lambda name: f"{root}{prefix}/reports/{name}", live=live)
        return HTMLResponse(html, headers=_headers(nonce))

    @router.get("/reports/{name}", include_in_schema=False)
    def report(name: str) -> FileResponse:
        folder = Path(host.cfg.state_dir) / "reports"
        path = folder / name
        if not REPORT_FILE.match(name) or not path.is_file():
            raise HTTPException(404, "no such drift report")
        return FileResponse(
            path, media_type="text/html", headers={"X-Content-Type-Options": "nosniff"}
        )

    @router.post("/session", status_code=204, include_in_schema=False)
    def session(
        request: Request,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Response:
        expected = current_token(request)
        if expected is None:
            raise HTTPException(403, "actions are disabled: the daemon has no token")
        if creds is None:
            raise HTTPException(401, "give 'Authorization: Bearer <token>'")
        if not hmac.compare_digest(creds.credentials.encode(), expected.encode()):
            raise HTTPException(403, "the bearer token is not valid")
        return Response(status_code=204)

    return router
