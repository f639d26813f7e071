"""The API's model endpoints: the versions, the operator's actions on them (promote,
roll back, approve, reject) and a manual retrain."""

from __future__ import annotations

import math
import uuid
from typing import Any

from fastapi import APIRouter, Response

from runtime.promotion import approval as review
from runtime.service.api_base import (
    ApiError,
    Auth,
    Host,
    IdemKey,
    Version,
    event_out,
    get_version,
    refusable,
)
from runtime.service.api_schema import (
    ActionRequest,
    ActionResponse,
    ModelOut,
    ModelsResponse,
    RetrainRequest,
    RetrainResponse,
)
from runtime.store import events as ev
from runtime.store.retrain_queue import RequestQueue
from runtime.store.rows import count_labelled, last_seq
from runtime.store.versions import ModelVersion


def models_router(host: Host) -> APIRouter:
    """The model endpoints over ``host``."""
    router = APIRouter()

    @router.get("/v1/models", response_model=ModelsResponse, tags=["model"])
    def models() -> ModelsResponse:
        """Every version with its status, lineage (parent) and metadata."""
        return ModelsResponse(
            champion=host.registry.champion(), models=[_model(v) for v in host.registry.list()]
        )

    @router.get("/v1/models/{version}", response_model=ModelOut, tags=["model"])
    def model(version: Version) -> ModelOut:
        """One version."""
        return _model(get_version(host.registry, version))

    # -- operator actions ----------------------------------------------------------------------
    @router.post("/v1/models/{version}/promote", response_model=ActionResponse, tags=["model"])
    def promote(version: Version, _: Auth, body: ActionRequest | None = None) -> ActionResponse:
        """Make a candidate the champion (recorded as ``model.promoted``)."""
        reason = (body.reason if body else None) or "manual promotion through the API"
        get_version(host.registry, version)
        promoted = ev.ModelPromoted(reason=reason, by="api")
        event = refusable(lambda: host.registry.promote(version, promoted))
        return ActionResponse(champion=host.registry.champion(), event=event_out(event))

    @router.post("/v1/models/{version}/rollback", response_model=ActionResponse, tags=["model"])
    def rollback(version: Version, _: Auth, body: ActionRequest | None = None) -> ActionResponse:
        """Make an earlier champion the champion again (``model.rolled_back``)."""
        reason = (body.reason if body else None) or "manual rollback through the API"
        get_version(host.registry, version)
        event = refusable(lambda: host.registry.rollback(version, reason=reason))
        return ActionResponse(champion=host.registry.champion(), event=event_out(event))

    @router.post("/v1/models/{version}/approve", response_model=ActionResponse, tags=["model"])
    def approve(version: Version, _: Auth, body: ActionRequest | None = None) -> ActionResponse:
        """Approve a candidate waiting for a person (manual gate mode)."""
        return _decide(host, version, "approve", body)

    @router.post("/v1/models/{version}/reject", response_model=ActionResponse, tags=["model"])
    def reject(version: Version, _: Auth, body: ActionRequest | None = None) -> ActionResponse:
        """Reject a candidate waiting for a person (manual gate mode)."""
        return _decide(host, version, "reject", body)

    @router.post(
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
    return router


def _model(v: ModelVersion) -> ModelOut:
    return ModelOut(
        version=v.version, parent=v.parent, status=v.status, created_at=v.created_at, meta=v.meta
    )


def _decide(host: Host, version: str, verb: str, body: ActionRequest | None) -> ActionResponse:
    """Approve or reject a candidate waiting for a person, as ``driftloop approve/reject``
    does (runtime.promotion.approval: the candidate must have passed the gate in manual mode)."""
    registry = host.registry
    get_version(registry, version)
    who = "an operator through the API"
    if verb == "approve":
        event = refusable(lambda: review.approve(registry, host.events, version, who=who))
    else:
        reason = (body.reason if body else None) or ""
        event = refusable(lambda: review.reject(registry, host.events, version, reason, who=who))
    return ActionResponse(champion=registry.champion(), event=event_out(event))


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
