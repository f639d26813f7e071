"""The HTTP API (FastAPI): :func:`create_app` puts together its routers.

Reads are open; mutating endpoints need ``Authorization: Bearer <token>``. Every error
is JSON ``{"error": "<one clear line>", "detail": …}`` with a 4xx status for bad input
(:mod:`runtime.service.api_base`). The endpoints live by concern: data in and
predictions out (:mod:`~runtime.service.api_data`), the models and the operator's actions
(:mod:`~runtime.service.api_models`), the state and operations
(:mod:`~runtime.service.api_ops`); the review page (:mod:`~runtime.service.ui`) and the
exported artifacts (:mod:`~runtime.service.artifacts`) bring their own.
"""

from __future__ import annotations

from fastapi import FastAPI

from runtime.config import ApiConfig
from runtime.service.api_base import ApiError, BodyLimit, Counting, Host, install_errors
from runtime.service.api_data import data_router
from runtime.service.api_models import models_router
from runtime.service.api_ops import ops_router, state_router
from runtime.service.api_schema import ERRORS
from runtime.service.artifacts import artifact_router, read_token
from runtime.service.limits import HeaderLimit
from runtime.service.prometheus import build_registry
from runtime.service.ui import ui_router

__all__ = ["ApiError", "Host", "create_app"]


def create_app(host: Host, api: ApiConfig, token: str | None) -> FastAPI:
    """The FastAPI app serving ``host``.

    Parameters
    ----------
    host
        The daemon (or a test double) whose state the API reads and writes.
    api
        Limits and listening settings.
    token
        The bearer token for mutating endpoints; ``None`` refuses every mutation (403).
    """
    prom, http = build_registry(host.db, host.registry, host.runtime_status)
    app = FastAPI(
        title="driftloop",
        version="1",
        description="Continual-learning runtime: ingest rows and labels, read the event "
        "log and the models, act on them.",
        responses=ERRORS,
    )
    app.state.token = token

    install_errors(app)
    app.add_middleware(Counting, http=http)
    app.add_middleware(BodyLimit, max_bytes=api.max_body_bytes)
    app.add_middleware(HeaderLimit, max_bytes=api.max_header_bytes, max_count=api.max_headers)
    app.include_router(ui_router(host))  # the review page at /ui, same token
    app.include_router(artifact_router(host, read_token(api), token))  # exports (handoff)
    app.include_router(data_router(host, api))
    app.include_router(state_router(host))
    app.include_router(models_router(host))
    app.include_router(ops_router(host, prom))
    return app
