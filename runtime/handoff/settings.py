"""The handoff settings a config names: ``export:`` and ``hooks:``.

Pure pydantic models (no torch, no HTTP client), so :mod:`runtime.config` can compose
them without importing what exports a model or delivers a hook.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Format = Literal["safetensors", "torchscript", "onnx"]

AWAITING_APPROVAL = "candidate.awaiting_approval"
"""Not an event kind: a ``gate.passed`` event whose candidate waits for a person."""

HookTrigger = Literal[
    "daemon.started", "daemon.stopped", "ingest.rejected", "drift.detected",
    "retrain.requested", "retrain.started", "retrain.finished", "retrain.failed",
    "gate.passed", "gate.failed", "model.promoted", "model.rolled_back", "stage.finished",
    "hook.failed", "labels.requested", "candidate.awaiting_approval",
]
"""What a hook can fire on: the event kinds (``retrain.progress`` and ``hook.delivered``
are too frequent to be worth a message) and :data:`AWAITING_APPROVAL`."""

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExportConfig(_Model):
    """Export every new champion (promotion or rollback) to ``dir/<version>/``, then point
    ``dir/current`` at it (a symlink swapped atomically)."""

    dir: Path
    formats: list[Format] = Field(default_factory=lambda: list[Format](["onnx"]), min_length=1)
    keep: int = Field(default=5, ge=1)
    """Exported versions kept in ``dir`` (the one ``current`` names always stays)."""
    opset: int = Field(default=17, ge=9, le=21)
    """The ONNX opset."""

    @field_validator("formats")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("formats must be distinct")
        return v


class HookConfig(_Model):
    """One hook: on the events it names, POST them to ``url`` or run ``command``.

    A webhook's body is JSON ``{"hook", "delivery", "trigger", "event"}``; with
    ``secret_env`` set, the header ``X-Driftloop-Signature-256: sha256=<hex>`` carries the
    HMAC-SHA256 of the body under that secret. A command gets the same JSON on stdin;
    exit status 0 means delivered. A failed attempt is retried after ``backoff_seconds``,
    doubling up to ``max_backoff_seconds``, ``retries`` times; then ``hook.failed``.
    """

    name: str | None = None
    """How events and the CLI name it (default: ``hook-<position>``)."""
    on: list[HookTrigger] = Field(min_length=1)
    url: str | None = None
    command: list[str] | None = Field(default=None, min_length=1)
    secret_env: str | None = None
    """Environment variable holding the webhook's signing secret."""
    timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    retries: int = Field(default=5, ge=0, le=100)
    backoff_seconds: float = Field(default=1.0, gt=0)
    max_backoff_seconds: float = Field(default=300.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        """YAML 1.1 reads a bare ``on:`` key as the boolean true: take it as ``on``."""
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if k is True else k): v for k, v in data.items()}
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not _NAME.match(v):
            raise ValueError(f"hook names are a letter then letters, digits, '_.-': {v!r}")
        return v

    @field_validator("url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"a webhook url must be http:// or https://, got {v!r}")
        return v

    @model_validator(mode="after")
    def _one_target(self) -> HookConfig:
        if (self.url is None) == (self.command is None):
            raise ValueError("a hook needs exactly one of url or command")
        if self.secret_env is not None and self.url is None:
            raise ValueError("secret_env signs webhooks; a command hook has no signature")
        return self


def hook_names(hooks: list[HookConfig]) -> list[str]:
    """Each hook's name, ``hook-<position>`` (from 1) where none is set."""
    return [h.name or f"hook-{i}" for i, h in enumerate(hooks, start=1)]
