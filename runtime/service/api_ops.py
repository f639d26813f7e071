"""The API's reads of the state (``/v1/status``, ``/v1/events``) and its operations
endpoints (``/healthz``, ``/readyz``, ``/metrics``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import text

from runtime.review.text import status_dict
from runtime.service.api_base import ApiError, Host, event_out
from runtime.service.api_schema import EventsResponse, Health, Readiness
from runtime.store import events as ev


def state_router(host: Host) -> APIRouter:
    """Status and the event log of ``host``."""
    router = APIRouter()
    cfg = host.cfg
    schema = cfg.schema
    features = list(schema.inputs)

    @router.get("/v1/status", tags=["state"])
    def status() -> dict[str, Any]:
        """Champion, row counts, pending retrains, leadership and detector statistics."""
        st = status_dict(cfg.state_dir, host.db, host.events, host.registry)
        st.update(host.runtime_status())
        st["daemon_running"] = True
        st["schema"] = {"features": features, "label": schema.label, "classes": schema.classes}
        return st

    @router.get("/v1/events", response_model=EventsResponse, tags=["state"])
    def events(
        kind: Annotated[list[str] | None, Query(description="repeatable; 'gate.' = prefix")] = None,
        since: Annotated[str | None, Query(max_length=64)] = None,
        until: Annotated[str | None, Query(max_length=64)] = None,
        model: Annotated[str | None, Query(max_length=64)] = None,
        after_id: Annotated[int | None, Query(ge=0, le=2**62)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> EventsResponse:
        """The event log in id order; page with ``after_id`` = the last id seen."""
        kinds = _kinds(kind)
        try:
            got = host.events.list(
                kinds=kinds,
                since=since,
                until=until,
                model_version=model,
                after_id=after_id,
                limit=limit + 1,
            )
        except ValueError as err:
            raise ApiError(422, str(err)) from None
        page = got[:limit]
        more = len(got) > limit
        return EventsResponse(
            events=[event_out(e) for e in page], next_after_id=page[-1].id if more else None
        )
    return router


def ops_router(host: Host, prom: CollectorRegistry) -> APIRouter:
    """Liveness, readiness and the Prometheus metrics of ``host``."""
    router = APIRouter()

    @router.get("/healthz", response_model=Health, tags=["ops"])
    def healthz() -> Health:
        """The process is up."""
        return Health(status="ok")

    @router.get(
        "/readyz",
        response_model=Readiness,
        tags=["ops"],
        responses={503: {"model": Readiness}},
    )
    def readyz(response: Response) -> Readiness:
        """Ready to serve: the database answers (503 otherwise)."""
        rt = host.runtime_status()
        try:
            with host.db.connect() as conn:
                conn.execute(text("SELECT 1"))
            champion = host.registry.champion()
            disk = host.db.writable()
        except Exception as err:  # any database failure means "not ready", never a 500
            response.status_code = 503
            reason = f"database unavailable: {type(err).__name__}"
            return Readiness(ready=False, reason=reason, champion=None, leader=False)
        if disk is not None:
            response.status_code = 503
            leader = bool(rt.get("leader"))
            return Readiness(ready=False, reason=disk.message, champion=champion, leader=leader)
        return Readiness(
            ready=True,
            reason="ok" if champion else "no champion yet",
            champion=champion,
            leader=bool(rt.get("leader")),
        )

    @router.get(
        "/metrics",
        tags=["ops"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    def metrics() -> Response:
        """Prometheus text format."""
        return Response(generate_latest(prom), media_type=CONTENT_TYPE_LATEST)
    return router


def _kinds(given: list[str] | None) -> list[str] | None:
    if not given:
        return None
    out: list[str] = []
    for item in given:
        for k in item.split(","):
            k = k.strip()
            found = sorted(x for x in ev.KINDS if x == k or (k.endswith(".") and x.startswith(k)))
            if not found:
                raise ApiError(
                    422, f"unknown event kind {k[:64]!r} (known: {', '.join(sorted(ev.KINDS))})"
                )
            out.extend(found)
    return out
