"""The mapping between a payload dataclass and its stored JSON object (the base of every
payload in :mod:`runtime.store.payloads`).

Field metadata (the helpers below) says how a field maps to its key:

- :func:`opt` (or :data:`OMIT` as ``metadata``) - left out while it holds its default;
- ``key=`` - the JSON key when it is not the field's name (``from`` is a keyword);
- ``items=`` / ``nested=`` - a list of, or one, nested payload object;
- :func:`presence` - a flag that is not written itself: it says whether the key it names
  is written at all (a ``None`` there is written as ``null``; an absent key reads False).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

P = TypeVar("P", bound="Payload")
_EMPTY: Mapping[str, Any] = {}
OMIT: Mapping[str, Any] = {"omit": True}


def opt(default: Any = None, **meta: Any) -> Any:
    """A field whose key is left out while it holds ``default`` (:data:`OMIT`)."""
    return field(default=default, metadata={**OMIT, **meta})


def key(name: str, default: Any = dataclasses.MISSING, **meta: Any) -> Any:
    """A field stored under the JSON key ``name``."""
    return field(default=default, metadata={"key": name, **meta})


def presence(of: str, default: bool) -> Any:
    """A flag saying whether the key ``of`` is written at all."""
    return field(default=default, metadata={"presence": of})


def _to_json(value: Any) -> Any:
    if isinstance(value, Payload):
        return value.to_json()
    if isinstance(value, tuple | list):
        return [_to_json(v) for v in value]
    return value


@dataclass(frozen=True)
class Payload:
    """Base of every payload: the JSON mapping both ways and the unknown keys."""

    SCHEMA: ClassVar[int] = 1

    def to_json(self) -> dict[str, Any]:
        """The JSON object this payload is stored as."""
        fields = dataclasses.fields(self)
        dropped = {
            f.metadata["presence"]
            for f in fields
            if "presence" in f.metadata and not getattr(self, f.name)
        }
        out: dict[str, Any] = {}
        for f in fields:
            if f.name == "extra" or "presence" in f.metadata:
                continue
            name = f.metadata.get("key", f.name)
            value = getattr(self, f.name)
            if name in dropped or (f.metadata.get("omit") and value == f.default):
                continue
            out[name] = _to_json(value)
        out.update(getattr(self, "extra", _EMPTY))
        return out

    @classmethod
    def from_json(cls: type[P], data: Mapping[str, Any]) -> P:
        """Parse a stored object: missing keys take defaults, unknown ones go to ``extra``."""
        kwargs: dict[str, Any] = {}
        known: set[str] = set()
        for f in dataclasses.fields(cls):
            if f.name == "extra":
                continue
            if "presence" in f.metadata:
                kwargs[f.name] = f.metadata["presence"] in data
                continue
            name = f.metadata.get("key", f.name)
            known.add(name)
            if name not in data:
                continue
            kwargs[f.name] = _parse_value(f, data[name])
        if any(f.name == "extra" for f in dataclasses.fields(cls)):
            kwargs["extra"] = {k: v for k, v in data.items() if k not in known}
        return cls(**kwargs)


def _parse_value(f: dataclasses.Field[Any], value: Any) -> Any:
    items, nested = f.metadata.get("items"), f.metadata.get("nested")
    if items is not None and isinstance(value, list):
        return tuple(items.from_json(v) for v in value if isinstance(v, Mapping))
    if nested is not None and isinstance(value, Mapping):
        return nested.from_json(value)
    if isinstance(value, list) and _is_tuple(f):
        return tuple(value)
    return value


def _is_tuple(f: dataclasses.Field[Any]) -> bool:
    return isinstance(f.type, str) and f.type.startswith("tuple")
