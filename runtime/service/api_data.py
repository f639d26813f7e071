"""The API's data endpoints: rows in (``/v1/ingest``), late labels in
(``/v1/labels``), the champion's predictions out (``/v1/predict``).

Ingest goes through the daemon's :class:`~runtime.intake.ingest.Ingestor` (the response is
sent after the transaction commits, so an acknowledged row survives a crash) and then to
the daemon's inbox, which its step drains into the monitor and the detectors.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np
import pandas as pd
import torch
from fastapi import APIRouter, Request, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from runtime.config import ApiConfig
from runtime.intake.http_body import decode_ingest
from runtime.intake.sources import Batch
from runtime.service.api_base import ApiError, Auth, Host, IdemKey
from runtime.service.api_schema import (
    INGEST_BODY,
    IngestRequest,
    IngestResponse,
    LabelsRequest,
    LabelsResponse,
    PredictRequest,
    PredictResponse,
    RowError,
)
from runtime.store.db import Database, quarantine
from strategies.evaluation import predict_logits, predict_proba


def data_router(host: Host, api: ApiConfig) -> APIRouter:
    """Ingest, labels and predict over ``host``, within ``api``'s limits."""
    router = APIRouter()
    schema = host.cfg.schema
    features = list(schema.inputs)  # a text column: its sentence

    @router.post(
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

    @router.post("/v1/labels", response_model=LabelsResponse, tags=["data"])
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

    @router.post("/v1/predict", response_model=PredictResponse, tags=["model"])
    def predict(body: PredictRequest) -> PredictResponse:
        """The champion's predictions (class values) and class probabilities; a
        regression champion's predicted values."""
        if len(body.rows) > api.max_batch_rows:
            raise ApiError(413, f"too many rows: {len(body.rows)} (limit {api.max_batch_rows})")
        unit = host.unit
        if unit is None:
            raise ApiError(503, "there is no champion yet (bootstrap has not finished)")
        x = _predict_matrix(host, body.rows, body.features, features)
        if host.cfg.task == "regression":
            values = predict_logits(unit.model, torch.as_tensor(x, dtype=torch.float32)).numpy()
            if not np.isfinite(values).all():
                raise ApiError(422, "the model produced non-finite output for these values")
            return PredictResponse(model_version=unit.version, classes=[], probabilities=[],
                                   predictions=values.reshape(-1).astype(float).tolist())
        probs = predict_proba(unit.model, torch.as_tensor(x, dtype=torch.float32)).numpy()
        if not np.isfinite(probs).all():
            raise ApiError(422, "the model produced non-finite output for these values")
        classes = list(schema.classes)
        return PredictResponse(
            model_version=unit.version,
            classes=classes,
            predictions=[classes[i] for i in probs.argmax(axis=1).tolist()],
            probabilities=probs.astype(float).round(6).tolist(),
        )
    return router


def _ingest(
    host: Host, api: ApiConfig, raw: bytes, content_type: str | None, key: str | None
) -> dict[str, Any]:
    """The body of ``POST /v1/ingest``: decode, check, store, hand to the detectors."""
    body = decode_ingest(raw, content_type, IngestRequest)
    features = list(host.cfg.schema.inputs)
    n = len(body.rows)
    if n > api.max_batch_rows:
        raise ApiError(413, f"too many rows in one batch: {n} (limit {api.max_batch_rows})")
    if body.labels is not None and len(body.labels) != n:
        raise ApiError(422, f"labels has {len(body.labels)} entries for {n} rows")
    if body.row_ids is not None and len(body.row_ids) != n:
        raise ApiError(422, f"row_ids has {len(body.row_ids)} entries for {n} rows")
    ts_col = host.cfg.schema.timestamp_column
    if body.timestamps is not None:
        if ts_col is None:
            raise ApiError(422, "timestamps given, but the schema names no timestamp_column")
        if len(body.timestamps) != n:
            raise ApiError(422, f"timestamps has {len(body.timestamps)} entries for {n} rows")
    request_id = uuid.uuid4().hex
    if body.row_ids is not None:
        ids = list(body.row_ids)
    elif key is not None:
        ids = list(map(f"{key}:".__add__, map(str, range(n))))
    else:
        ids = list(map(f"http-{request_id}-".__add__, map(str, range(n))))
    origin = f"http:{request_id}"
    texts = bool(host.cfg.schema.text_columns)
    if texts or body.timestamps is not None or _has_text(body.rows) or _has_text(
            [body.labels or []]):
        # categories, class names or times as text: judged and encoded as a file's rows are
        frame, errors = _frame(body.rows, body.features, features)
        if body.labels is not None:
            frame[host.cfg.schema.label] = pd.Series(body.labels, dtype=object)
        if body.timestamps is not None and ts_col is not None:
            frame[ts_col] = pd.Series(body.timestamps, dtype=object)
        frame[host.cfg.schema.id_column] = ids
        acc = host.ingestor.ingest(Batch(origin=origin, frame=frame, row_errors=errors))
    else:
        x, errors = _matrix(body.rows, body.features, features)
        labels = None if body.labels is None else np.array(body.labels, dtype=np.float64)
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


def _predict_matrix(
    host: Host, rows: list[list[float | str | None]], names: list[str] | None,
    features: list[str],
) -> np.ndarray:
    """The rows of ``/v1/predict`` in the stored form (categories as codes, booleans as
    0/1), judged by the ingest validator's column rules; 422 on the first bad value."""
    if any(len(r) != len(features) for r in rows):
        bad = next(i for i, r in enumerate(rows) if len(r) != len(features))
        raise ApiError(422, f"row {bad}: expected {len(features)} values, got {len(rows[bad])}")
    if names is not None and (sorted(names) != sorted(features) or len(set(names)) != len(names)):
        raise ApiError(
            422, f"features must name each of the schema's features once: {', '.join(features)}"
        )
    frame = pd.DataFrame(rows, columns=names or features, dtype=object)[features]
    x, reasons = host.ingestor.validator.encode(frame)
    if reasons:
        first = min(reasons)
        raise ApiError(422, f"row {first}: {reasons[first]}")
    return x


def _has_text(rows: Sequence[Sequence[object]]) -> bool:
    return any(isinstance(v, str) for r in rows for v in r)


def _frame(
    rows: Sequence[Sequence[float | str | None]], names: list[str] | None, features: list[str]
) -> tuple[pd.DataFrame, dict[int, str]]:
    """Rows with text values → a frame in schema order (objects, as a file's); ragged rows
    become errors (1-based) and empty rows."""
    if names is not None and (sorted(names) != sorted(features) or len(set(names)) != len(names)):
        raise ApiError(
            422, f"features must name each of the schema's features once: {', '.join(features)}"
        )
    nf = len(features)
    errors = {i + 1: f"expected {nf} values, got {len(r)}" for i, r in enumerate(rows)
              if len(r) != nf}
    fixed = [list(r) if len(r) == nf else [None] * nf for r in rows]
    frame = pd.DataFrame(fixed, columns=names or features, dtype=object)
    return frame[features].reset_index(drop=True), errors


def _matrix(
    rows: Sequence[Sequence[float | str | None]], names: list[str] | None, features: list[str]
) -> tuple[np.ndarray, dict[int, str]]:
    """Rows → a float matrix in schema order; ragged rows become errors (1-based)."""
    if names is not None and (sorted(names) != sorted(features) or len(set(names)) != len(names)):
        raise ApiError(
            422, f"features must name each of the schema's features once: {', '.join(features)}"
        )
    nf = len(features)
    errors: dict[int, str] = {}
    if any(len(r) != nf for r in rows):
        fixed: list[list[float | str | None]] = []
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
