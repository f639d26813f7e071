"""The schema as the data settled it: inferred column types and category names, kept in ``kv``.

A feature declared by name only gets its type from the first rows ingested (see
:meth:`runtime.intake.validation.Validator.infer`); the type is stored here so that a
restarted daemon, ``driftloop bootstrap`` and the retrain child read the same rows the
same way. Category names (code → text) are kept beside them, so a version's saved
preprocessing names its categories instead of their codes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from runtime.intake.settings import SchemaConfig
from runtime.store.db import Database, from_json, kv, to_json

SCHEMA_KEY = "schema.inferred"
MAX_NAMES = 10000


def load_state(db: Database) -> dict[str, Any]:
    """``{"types": {feature: type}, "names": {code: text}}`` (empty when nothing stored)."""
    with db.connect() as conn:
        row = conn.execute(select(kv.c.value).where(kv.c.key == SCHEMA_KEY)).first()
    if row is None:
        return {"types": {}, "names": {}}
    data = from_json(row[0])
    return {"types": dict(data.get("types", {})), "names": dict(data.get("names", {}))}


def save_state(db: Database, types: dict[str, str], names: dict[float, str]) -> None:
    """Store the inferred types and (up to :data:`MAX_NAMES`) category names."""
    shown = {repr(float(k)): v for k, v in list(names.items())[:MAX_NAMES]}
    blob = to_json({"types": types, "names": shown})
    with db.begin() as conn:
        if conn.execute(select(kv.c.key).where(kv.c.key == SCHEMA_KEY)).first() is None:
            conn.execute(kv.insert(), [{"key": SCHEMA_KEY, "value": blob}])
        else:
            conn.execute(update(kv).where(kv.c.key == SCHEMA_KEY).values(value=blob))


def resolved(db: Database, schema: SchemaConfig) -> tuple[SchemaConfig, dict[float, str]]:
    """``schema`` with the stored inferred types filled in, and the category names."""
    state = load_state(db)
    names = {float(k): v for k, v in state["names"].items()}
    return schema.with_types(state["types"]) if state["types"] else schema, names


def column_specs(schema: SchemaConfig) -> list[dict[str, Any]]:
    """Per feature what :func:`strategies.tabular.fit_preprocessing` takes."""
    return [
        {
            "name": f,
            "type": schema.column(f).type or "numeric",
            "missing": schema.missing_rule(f),
            "min_count": schema.column(f).min_count,
        }
        for f in schema.features
    ]
