"""Decoding ``POST /v1/ingest`` bodies: msgspec for well-formed ones, pydantic for the rest.

A batch of thousands of values is hundreds of kB of JSON; FastAPI's own body handling
(``json.loads`` into Python objects, then pydantic) holds the interpreter for much of a
request, and msgspec decodes straight into typed lists at a fraction of that cost
(bench/ingest_http.py). A body msgspec refuses is decoded again exactly as FastAPI would
(``json.loads`` then the pydantic model), so a bad body gets pydantic's 422 and one-line
message, and a body pydantic's lax mode accepts (a number sent as a string) is
accepted. JSON that no decoder takes (nested too deep, a number of thousands of digits)
is a 422 naming that, as it is on the endpoints FastAPI decodes (:func:`body_problem`).
The pydantic model stays the documented schema (OpenAPI).
"""

from __future__ import annotations

import email.message
import json
import sys
from collections.abc import Sequence
from typing import Annotated, Protocol

import msgspec
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

INT32 = 2**31


class IngestBody(Protocol):
    """What the ingest endpoint reads from a decoded body (either decoder's result)."""

    @property
    def rows(self) -> list[list[float | None]]: ...
    @property
    def features(self) -> list[str] | None: ...
    @property
    def labels(self) -> list[int | None] | None: ...
    @property
    def row_ids(self) -> list[str] | None: ...
    @property
    def timestamps(self) -> Sequence[float | str | None] | None: ...


_Label = Annotated[int, msgspec.Meta(ge=-INT32, le=INT32 - 1)]
_RowId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class _Fast(msgspec.Struct, forbid_unknown_fields=True):
    rows: Annotated[list[list[float | None]], msgspec.Meta(min_length=1)]
    features: list[str] | None = None
    labels: list[_Label | None] | None = None
    row_ids: list[_RowId] | None = None
    timestamps: list[float | None] | None = None  # epoch seconds (ISO text: pydantic)


_DECODER = msgspec.json.Decoder(_Fast)


def _is_json(content_type: str | None) -> bool:
    """FastAPI's rule (strict content type): ``application/json`` or ``+json`` only."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _clean_ids(ids: list[str] | None) -> bool:
    """The checks pydantic's ``RowId`` adds to a length-checked string."""
    if ids is None:
        return True
    if not all(r.isprintable() for r in ids):
        return False
    try:
        "".join(ids).encode()  # lone surrogates
    except UnicodeEncodeError:
        return False
    return True


def decode_ingest(raw: bytes, content_type: str | None, model: type[BaseModel]) -> IngestBody:
    """The decoded body, or :class:`RequestValidationError` (422) naming what is wrong.

    Parameters
    ----------
    raw
        The request body.
    content_type
        The request's ``Content-Type`` header.
    model
        The pydantic model of the body (the schema; decides every body msgspec refuses).
    """
    if not raw:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    if not _is_json(content_type):
        return _pydantic(raw, model)
    try:
        fast = _DECODER.decode(raw)
    except (msgspec.MsgspecError, UnicodeDecodeError):  # not UTF-8: json.loads says so below
        fast = None
    if fast is not None and _clean_ids(fast.row_ids):
        return fast
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", e.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": e.msg},
                }
            ]
        ) from None
    except UnicodeDecodeError as e:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": f"not UTF-8: {e.reason}"}]
        ) from None
    except (RecursionError, ValueError) as e:
        raise HTTPException(422, body_problem(e)) from None
    return _pydantic(data, model)


def body_problem(err: BaseException | None) -> str | None:
    """The one line naming why a JSON body could not be decoded (nested too deep, a
    number too long), or None when ``err`` is no such failure. FastAPI reports these as
    a bare 400 for the bodies it decodes itself; the API answers them as ingest does."""
    if isinstance(err, RecursionError):
        return "body is not valid JSON: nested too deep"
    if isinstance(err, UnicodeDecodeError):
        return f"body is not valid JSON: not UTF-8 ({err.reason})"
    if isinstance(err, ValueError) and "digits" in str(err):
        limit = sys.get_int_max_str_digits()
        return f"body is not valid JSON: a number has more than {limit} digits"
    if isinstance(err, ValueError):
        return f"body is not valid JSON: {str(err).splitlines()[0][:200]}"
    return None


def _pydantic(data: object, model: type[BaseModel]) -> IngestBody:
    try:
        body = model.model_validate(data)
    except ValidationError as err:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in err.errors(include_url=False)]
        ) from None
    return body  # type: ignore[return-value]  # the model has the protocol's fields
