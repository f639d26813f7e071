"""The HTTP API (FastAPI, imported here and in its /ui router, runtime/service/ui.py):
:func:`create_app`.

Reads are open; mutating endpoints need ``Authorization: Bearer <token>``. Every error
is JSON ``{"error": "<one clear line>", "detail": …}`` with a 4xx status for bad input.
Ingest goes through the daemon's :class:`~runtime.intake.ingest.Ingestor` (the response is
sent after the transaction commits, so an acknowledged row survives a crash) and then
to the daemon's inbox, which its step drains into the monitor and the detectors.

Exceptions: :class:`ApiError` (status + message) is raised by handlers; validation
errors become 422, oversized bodies 413, anything unexpected 500 (logged; a bug).
"""

from __future__ import annotations

import hmac
import logging
import math
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Protocol

import msgspec
import numpy as np
import pandas as pd
import torch
from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.config import ApiConfig, DriftloopConfig
from runtime.intake.http_body import body_problem, decode_ingest
from runtime.intake.ingest import Accepted, Ingestor
from runtime.intake.sources import Batch
from runtime.promotion import approval as review
from runtime.review.text import status_dict
from runtime.service.api_schema import (
    ERRORS,
    IDEMPOTENCY,
    INGEST_BODY,
    ActionRequest,
    ActionResponse,
    EventOut,
    EventsResponse,
    Health,
    IngestRequest,
    IngestResponse,
    LabelsRequest,
    LabelsResponse,
    ModelOut,
    ModelsResponse,
    PredictRequest,
    PredictResponse,
    Readiness,
    RetrainRequest,
    RetrainResponse,
    RowError,
)
from runtime.service.artifacts import artifact_router, read_token
from runtime.service.limits import HeaderLimit
from runtime.service.prometheus import HttpMetrics, build_registry
from runtime.service.ui import ui_router
from runtime.store import events as ev
from runtime.store.db import Database, quarantine, to_json
from runtime.store.disk import storage_problem
from runtime.store.events import Event, EventLog
from runtime.store.retrain_queue import RequestQueue
from runtime.store.rows import count_labelled, last_seq
from runtime.store.unit import Unit
from runtime.store.versions import IntegrityError, ModelVersion, Registry
from strategies.evaluation import predict_proba

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
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# -- plumbing ------------------------------------------------------------------------------
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


def _event(e: Event) -> EventOut:
    return EventOut(**e.to_dict())


def _model(v: ModelVersion) -> ModelOut:
    return ModelOut(
        version=v.version, parent=v.parent, status=v.status, created_at=v.created_at, meta=v.meta
    )


def _matrix(
    rows: Sequence[Sequence[float | None]], names: list[str] | None, features: list[str]
) -> tuple[np.ndarray, dict[int, str]]:
    """Rows → a float matrix in schema order; ragged rows become errors (1-based)."""
    if names is not None and (sorted(names) != sorted(features) or len(set(names)) != len(names)):
        raise ApiError(
            422, f"features must name each of the schema's features once: {', '.join(features)}"
        )
    nf = len(features)
    errors: dict[int, str] = {}
    if any(len(r) != nf for r in rows):
        fixed: list[list[float | None]] = []
        for i, r in enumerate(rows):
            if len(r) != nf:
                errors[i + 1] = f"expected {nf} values, got {len(r)}"
                fixed.append([None] * nf)
            else:
                fixed.append(list(r))
        x = np.array(fixed, dtype=np.float64)
    else:
        x = np.array(rows, dtype=np.float64)
    if names is not None and names != features:
        x = x[:, [names.index(f) for f in features]]
    return x, errors


def _row_errors(db: Database, origin: str) -> list[RowError]:
    with db.connect() as conn:
        found = conn.execute(
            select(quarantine.c.row_number, quarantine.c.reason)
            .where(quarantine.c.source == origin)
            .order_by(quarantine.c.id)
            .limit(100)
        ).all()
    return [RowError(index=int(n) - 1, reason=str(r)) for n, r in found]


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


# -- the app -------------------------------------------------------------------------------
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
    cfg = host.cfg
    schema = cfg.schema
    features = list(schema.features)
    prom, http = build_registry(host.db, host.registry, host.runtime_status)
    app = FastAPI(
        title="driftloop",
        version="1",
        description="Continual-learning runtime: ingest rows and labels, read the event "
        "log and the models, act on them.",
        responses=ERRORS,
    )
    app.state.token = token

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

    app.add_middleware(Counting, http=http)
    app.add_middleware(BodyLimit, max_bytes=api.max_body_bytes)
    app.add_middleware(HeaderLimit, max_bytes=api.max_header_bytes, max_count=api.max_headers)
    app.include_router(ui_router(host))  # the review page at /ui, same token
    app.include_router(artifact_router(host, read_token(api), token))  # exports (handoff)

    # -- writes: rows and labels ---------------------------------------------------------
    @app.post(
        "/v1/ingest",
        response_model=IngestResponse,
        tags=["data"],
        openapi_extra={"requestBody": INGEST_BODY},
    )
    async def ingest(request: Request, _: Auth, idempotency_key: IdemKey = None) -> Response:
        """Validate and store a batch of rows durably, then monitor them.

        Rows without ids get ``<Idempotency-Key>:<index>`` (so a retried request is
        recognised row by row) or a fresh unique id. Bad rows are quarantined and listed
        in ``errors``; the rest are stored. A repeated row id is skipped (``duplicates``).
        """
        raw = await request.body()  # the body is decoded here, not by FastAPI: see ingest_body
        ctype = request.headers.get("content-type")
        out = await run_in_threadpool(_ingest, host, api, raw, ctype, idempotency_key)
        return Response(msgspec.json.encode(out), media_type="application/json")

    @app.post("/v1/labels", response_model=LabelsResponse, tags=["data"])
    def labels(body: LabelsRequest, _: Auth) -> LabelsResponse:
        """Late labels by row id; a row that has a label already keeps it."""
        n = len(body.row_ids)
        if n > api.max_batch_rows:
            raise ApiError(413, f"too many labels in one batch: {n} (limit {api.max_batch_rows})")
        if len(body.labels) != n:
            raise ApiError(422, f"labels has {len(body.labels)} entries for {n} row ids")
        if len(set(body.row_ids)) != n:
            raise ApiError(422, "row_ids must be distinct within one request")
        frame = pd.DataFrame({schema.id_column: list(body.row_ids), schema.label: body.labels})
        origin = f"http-labels:{uuid.uuid4().hex}"
        acc = host.ingestor.ingest(Batch(origin=origin, frame=frame))
        host.submit(acc)
        joined = len(acc.labels_joined)
        return LabelsResponse(
            joined=joined,
            already_labelled=n - joined - acc.rejected,
            rejected=acc.rejected,
            errors=_row_errors(host.db, origin) if acc.rejected else [],
        )

    # -- the champion ----------------------------------------------------------------------
    @app.post("/v1/predict", response_model=PredictResponse, tags=["model"])
    def predict(body: PredictRequest) -> PredictResponse:
        """The champion's predictions (class values) and class probabilities."""
        if len(body.rows) > api.max_batch_rows:
            raise ApiError(413, f"too many rows: {len(body.rows)} (limit {api.max_batch_rows})")
        unit = host.unit
        if unit is None:
            raise ApiError(503, "there is no champion yet (bootstrap has not finished)")
        x, errors = _matrix(body.rows, body.features, features)
        if errors:
            first = min(errors)
            raise ApiError(422, f"row {first - 1}: {errors[first]}")
        if not np.isfinite(x).all():
            raise ApiError(422, "every value must be a finite number")
        probs = predict_proba(unit.model, torch.as_tensor(x, dtype=torch.float32)).numpy()
        if not np.isfinite(probs).all():
            raise ApiError(422, "the model produced non-finite output for these values")
        classes = [int(c) for c in schema.classes]
        return PredictResponse(
            model_version=unit.version,
            classes=classes,
            predictions=[classes[i] for i in probs.argmax(axis=1).tolist()],
            probabilities=probs.astype(float).round(6).tolist(),
        )

    # -- reads -------------------------------------------------------------------------------
    @app.get("/v1/status", tags=["state"])
    def status() -> dict[str, Any]:
        """Champion, row counts, pending retrains, leadership and detector statistics."""
        st = status_dict(cfg.state_dir, host.db, host.events, host.registry)
        st.update(host.runtime_status())
        st["daemon_running"] = True
        st["schema"] = {"features": features, "label": schema.label, "classes": schema.classes}
        return st

    @app.get("/v1/events", response_model=EventsResponse, tags=["state"])
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
            events=[_event(e) for e in page], next_after_id=page[-1].id if more else None
        )

    @app.get("/v1/models", response_model=ModelsResponse, tags=["model"])
    def models() -> ModelsResponse:
        """Every version with its status, lineage (parent) and metadata."""
        return ModelsResponse(
            champion=host.registry.champion(), models=[_model(v) for v in host.registry.list()]
        )

    @app.get("/v1/models/{version}", response_model=ModelOut, tags=["model"])
    def model(version: Version) -> ModelOut:
        """One version."""
        return _model(_get_version(host.registry, version))

    # -- operator actions ----------------------------------------------------------------------
    @app.post("/v1/models/{version}/promote", response_model=ActionResponse, tags=["model"])
    def promote(version: Version, _: Auth, body: ActionRequest | None = None) -> ActionResponse:
        """Make a candidate the champion (recorded as ``model.promoted``)."""
        reason = (body.reason if body else None) or "manual promotion through the API"
        _get_version(host.registry, version)
        promoted = ev.ModelPromoted(reason=reason, by="api")
        event = _refusable(lambda: host.registry.promote(version, promoted))
        return ActionResponse(champion=host.registry.champion(), event=_event(event))

    @app.post("/v1/models/{version}/rollback", response_model=ActionResponse, tags=["model"])
    def rollback(version: Version, _: Auth, body: ActionRequest | None = None) -> ActionResponse:
        """Make an earlier champion the champion again (``model.rolled_back``)."""
        reason = (body.reason if body else None) or "manual rollback through the API"
        _get_version(host.registry, version)
        event = _refusable(lambda: host.registry.rollback(version, reason=reason))
        return ActionResponse(champion=host.registry.champion(), event=_event(event))

    @app.post("/v1/models/{version}/approve", response_model=ActionResponse, tags=["model"])
    def approve(version: Version, _: Auth, body: ActionRequest | None = None) -> ActionResponse:
        """Approve a candidate waiting for a person (manual gate mode)."""
        return _decide(host, version, "approve", body)

    @app.post("/v1/models/{version}/reject", response_model=ActionResponse, tags=["model"])
    def reject(version: Version, _: Auth, body: ActionRequest | None = None) -> ActionResponse:
        """Reject a candidate waiting for a person (manual gate mode)."""
        return _decide(host, version, "reject", body)

    @app.post(
        "/v1/retrain",
        response_model=RetrainResponse,
        status_code=201,
        tags=["model"],
        responses={200: {"model": RetrainResponse, "description": "already requested"}},
    )
    def retrain(
        _: Auth,
        response: Response,
        body: RetrainRequest | None = None,
        idempotency_key: IdemKey = None,
    ) -> RetrainResponse:
        """Ask the leader to retrain the champion on the labelled rows since ``since_seq``
        (default: the rows after the champion's training data). One request per
        ``Idempotency-Key``: a repeat returns the first (201 then 200)."""
        out = _manual_retrain(host, body or RetrainRequest(), idempotency_key)
        response.status_code = 201 if out.created else 200
        return out

    # -- operations --------------------------------------------------------------------------
    @app.get("/healthz", response_model=Health, tags=["ops"])
    def healthz() -> Health:
        """The process is up."""
        return Health(status="ok")

    @app.get(
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

    @app.get(
        "/metrics",
        tags=["ops"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    def metrics() -> Response:
        """Prometheus text format."""
        return Response(generate_latest(prom), media_type=CONTENT_TYPE_LATEST)

    return app


def _ingest(
    host: Host, api: ApiConfig, raw: bytes, content_type: str | None, key: str | None
) -> dict[str, Any]:
    """The body of ``POST /v1/ingest``: decode, check, store, hand to the detectors."""
    body = decode_ingest(raw, content_type, IngestRequest)
    features = list(host.cfg.schema.features)
    n = len(body.rows)
    if n > api.max_batch_rows:
        raise ApiError(413, f"too many rows in one batch: {n} (limit {api.max_batch_rows})")
    if body.labels is not None and len(body.labels) != n:
        raise ApiError(422, f"labels has {len(body.labels)} entries for {n} rows")
    if body.row_ids is not None and len(body.row_ids) != n:
        raise ApiError(422, f"row_ids has {len(body.row_ids)} entries for {n} rows")
    x, errors = _matrix(body.rows, body.features, features)
    labels = None if body.labels is None else np.array(body.labels, dtype=np.float64)
    request_id = uuid.uuid4().hex
    if body.row_ids is not None:
        ids = list(body.row_ids)
    elif key is not None:
        ids = list(map(f"{key}:".__add__, map(str, range(n))))
    else:
        ids = list(map(f"http-{request_id}-".__add__, map(str, range(n))))
    origin = f"http:{request_id}"
    acc = host.ingestor.ingest_arrays(origin, x, labels, ids, errors)
    host.submit(acc)
    errs = _row_errors(host.db, origin) if acc.rejected else []
    return IngestResponse(
        accepted=acc.count,
        duplicates=acc.duplicates,
        rejected=acc.rejected,
        first_seq=int(acc.seqs.min()) if acc.count else None,
        last_seq=int(acc.seqs.max()) if acc.count else None,
        replayed=acc.count == 0 and acc.duplicates == n,
        errors=errs,
    ).model_dump()


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


def _get_version(registry: Registry, version: str) -> ModelVersion:
    try:
        return registry.get(version)
    except KeyError:
        raise ApiError(404, f"unknown model version {version!r}") from None


def _refusable(action: Callable[[], Event]) -> Event:
    try:
        return action()
    except (ValueError, IntegrityError) as err:
        raise ApiError(409, str(err)) from None
    except KeyError as err:  # str() would add quotes around the message
        raise ApiError(404, str(err.args[0]) if err.args else "not found") from None


def _decide(host: Host, version: str, verb: str, body: ActionRequest | None) -> ActionResponse:
    """Approve or reject a candidate waiting for a person, as ``driftloop approve/reject``
    does (runtime.promotion.approval: the candidate must have passed the gate in manual mode)."""
    registry = host.registry
    _get_version(registry, version)
    who = "an operator through the API"
    if verb == "approve":
        event = _refusable(lambda: review.approve(registry, host.events, version, who=who))
    else:
        reason = (body.reason if body else None) or ""
        event = _refusable(lambda: review.reject(registry, host.events, version, reason, who=who))
    return ActionResponse(champion=registry.champion(), event=_event(event))


def _manual_retrain(host: Host, body: RetrainRequest, key: str | None) -> RetrainResponse:
    trigger = f"manual-{key or uuid.uuid4().hex}"
    queue = RequestQueue(host.db, host.events)
    known = queue.get(trigger)
    if known is not None:
        return _retrain_response(trigger, known, created=False)
    champion = host.registry.champion()
    if champion is None:
        raise ApiError(409, "cannot retrain: there is no champion yet")
    onset = body.since_seq
    if onset is None:
        data = host.registry.get(champion).meta.get("data", {})
        last = data.get("last_row")
        onset = int(last) + 1 if isinstance(last, int) and not math.isnan(last) else 0
    upto = last_seq(host.db)
    labelled = count_labelled(host.db, onset)
    if labelled < 2:
        raise ApiError(
            409,
            f"cannot retrain: {labelled} labelled row(s) since row {onset} "
            "(send labels, or give an earlier since_seq)",
        )
    payload = ev.RetrainRequested(
        trigger_id=trigger,
        onset=onset,
        upto=upto,
        detector="manual",
        labelled_rows=labelled,
        alarm_row=None,
        reason=body.reason or "manual retrain through the API",
    )
    created = queue.request(trigger, payload, champion)  # False: a concurrent twin won
    known = queue.get(trigger) or ("pending", payload.to_json())
    return _retrain_response(trigger, known, created)


def _retrain_response(
    trigger: str, known: tuple[str, dict[str, Any]], created: bool
) -> RetrainResponse:
    status, stored = known
    p = ev.RetrainRequested.from_json(stored)  # the queue keeps the event's payload
    return RetrainResponse(
        trigger_id=trigger,
        created=created,
        status=status,
        onset=int(p.onset),
        upto=int(p.upto),
        labelled_rows=int(p.labelled_rows),
    )
