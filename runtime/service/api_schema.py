"""The HTTP API's request and response bodies (pydantic), and the error responses
every route documents in the OpenAPI schema."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _clean_text(value: str) -> str:
    if not value.isprintable():
        raise ValueError("must be printable text (no control characters)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


RowId = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_clean_text)]
Reason = Annotated[str, Field(max_length=500), AfterValidator(_clean_text)]
Label = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
Target = Annotated[float, Field(allow_inf_nan=False)]
"""A regression target (``task: regression``); a classifier quarantines it."""
ClassName = Annotated[str, Field(min_length=1, max_length=200)]
EventTime = Annotated[float, Field(allow_inf_nan=False)] | Annotated[
    str, Field(min_length=1, max_length=64)]
IDEMPOTENCY = r"^[A-Za-z0-9._:-]{1,100}$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IngestRequest(_Body):
    """A batch of rows; values in ``features`` order (default: the schema's order)."""

    rows: list[list[float | str | None]] = Field(min_length=1)
    """Numbers, or for categorical and boolean columns their text; ``null`` where missing."""
    features: list[str] | None = None
    labels: list[Label | Target | ClassName | None] | None = None
    """Class values, or the names of string ``classes``; regression targets."""
    row_ids: list[RowId] | None = None
    timestamps: list[EventTime | None] | None = None
    """Each row's event time, for ``schema.timestamp_column``: ISO 8601 text or epoch
    seconds (the rows are ordered by it, and ``events --since`` and the page read it)."""


INGEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {"application/json": {"schema": IngestRequest.model_json_schema()}},
}
"""The ingest body as OpenAPI documents it (the endpoint decodes it itself, for speed)."""


class RowError(BaseModel):
    index: int
    reason: str


class IngestResponse(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    first_seq: int | None
    last_seq: int | None
    replayed: bool
    errors: list[RowError]


class LabelsRequest(_Body):
    row_ids: list[RowId] = Field(min_length=1)
    labels: list[Label | Target]


class LabelsResponse(BaseModel):
    joined: int
    already_labelled: int
    rejected: int
    errors: list[RowError]


class PredictRequest(_Body):
    rows: list[list[float | str | None]] = Field(min_length=1)
    """Numbers, or for categorical and boolean columns their text; ``null`` where missing
    (refused unless the column's ``missing`` rule imputes)."""
    features: list[str] | None = None


class PredictResponse(BaseModel):
    """Class values and probabilities; a regression champion's predicted values (in
    target units), with ``classes`` and ``probabilities`` empty."""

    model_version: str
    classes: list[int | str]
    predictions: list[int | str | float]
    probabilities: list[list[float]]


class EventOut(BaseModel):
    id: int
    ts: str
    kind: str
    model_version: str | None
    payload: dict[str, Any]


class EventsResponse(BaseModel):
    events: list[EventOut]
    next_after_id: int | None


class ModelOut(BaseModel):
    version: str
    parent: str | None
    status: str
    created_at: str
    meta: dict[str, Any]


class ModelsResponse(BaseModel):
    champion: str | None
    models: list[ModelOut]


class ActionRequest(_Body):
    reason: Reason | None = None


class ActionResponse(BaseModel):
    champion: str | None
    event: EventOut | None


class RetrainRequest(_Body):
    reason: Reason | None = None
    since_seq: int | None = Field(default=None, ge=0, le=2**62)


class RetrainResponse(BaseModel):
    trigger_id: str
    created: bool
    status: str
    onset: int
    upto: int
    labelled_rows: int


class ErrorBody(BaseModel):
    error: str
    detail: list[dict[str, Any]] | None = None


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    reason: str
    champion: str | None
    leader: bool


_E = {"model": ErrorBody}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: _E,
    401: _E,
    403: _E,
    404: _E,
    405: _E,
    409: _E,
    413: _E,
    415: _E,
    422: _E,
    500: _E,
    503: _E,
}
