"""The champion and its exports over HTTP: :func:`artifact_router`, mounted on the API.

``GET /v1/champion`` says which version serves now, since when, and which version the
export directory's ``current`` names. ``GET /v1/models/{version}/artifact?format=F``
returns that version's model file in format F (``&file=manifest.json``: its manifest),
with the file's sha256 in ``X-Driftloop-Sha256`` and as the ETag. The files are the
export directory's (``export:``) when it holds the version in that format; otherwise the
version is exported on first request into ``<state_dir>/exports/<version>/<format>/``
(checked against PyTorch as every export is) and served from there after.

Artifacts need a bearer token when ``api.read_token_env`` is set: that token or the
API's mutating one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import threading
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.responses import FileResponse, JSONResponse

from runtime.config import ApiConfig, DriftloopConfig
from runtime.handoff.export import (
    FILES,
    MANIFEST,
    ExportError,
    current_version,
    export_version,
)
from runtime.store import events as ev
from runtime.store.events import EventLog
from runtime.store.versions import Registry

__all__ = ["ArtifactHost", "artifact_router", "read_token"]

_bearer = HTTPBearer(auto_error=False)
Version = Annotated[str, PathParam(pattern=r"^v[1-9][0-9]{0,8}$", description="a version like v3")]


class ArtifactHost(Protocol):
    """What the endpoints read (the daemon, as the API's ``Host``, has all of it)."""

    cfg: DriftloopConfig
    events: EventLog
    registry: Registry


def read_token(api: ApiConfig) -> str | None:
    """The artifacts' token from ``api.read_token_env`` (None when unset in the config).

    Raises
    ------
    ValueError
        The config names a variable that is unset or empty.
    """
    if api.read_token_env is None:
        return None
    value = os.environ.get(api.read_token_env, "").strip()
    if not value:
        raise ValueError(f"api.read_token_env: ${api.read_token_env} is unset or empty "
                         "(set it, or remove read_token_env to leave artifacts open)")
    return value


def _error(status: int, message: str) -> HTTPException:
    return HTTPException(status, message)


def artifact_router(host: ArtifactHost, read: str | None, write: str | None) -> APIRouter:
    """The two endpoints over ``host``; ``read`` (and ``write``) are the tokens an
    artifact request may carry (``read=None``: artifacts are open)."""
    router = APIRouter(tags=["model"])
    cfg = host.cfg
    cache = cfg.state_dir / "exports"
    lock = threading.Lock()

    def allowed(
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        if read is None:
            return
        if creds is None:
            raise _error(401, "artifacts need 'Authorization: Bearer <token>' (the read token)")
        given = creds.credentials.encode()
        if not any(t is not None and hmac.compare_digest(given, t.encode())
                   for t in (read, write)):
            raise _error(403, "the bearer token is not valid")

    @router.get("/v1/champion")
    def champion() -> dict[str, Any]:
        """The version serving now, since when, and what the export directory serves."""
        version = host.registry.champion()
        changes = host.events.list(kinds=[ev.MODEL_PROMOTED, ev.MODEL_ROLLED_BACK],
                                   descending=True, limit=1)
        exp = cfg.export
        return {
            "champion": version,
            "since": changes[0].ts if changes else None,
            "export": None if exp is None else {
                "dir": str(exp.dir), "current": current_version(exp.dir),
                "formats": list(exp.formats),
            },
        }

    # the dependency goes in the decorator: an annotation naming the local ``allowed``
    # would be resolved in the module's globals (postponed annotations) and fail
    @router.get("/v1/models/{version}/artifact", response_class=Response,
                dependencies=[Depends(allowed)])
    def artifact(
        version: Version,
        request: Request,
        format: Annotated[Literal["safetensors", "torchscript", "onnx"], Query()],
        file: Annotated[Literal["model", "manifest.json"], Query()] = "model",
    ) -> Response:
        """A version's exported model file (or its manifest) in ``format``."""
        try:
            host.registry.get(version)
        except KeyError:
            return JSONResponse({"error": f"unknown model version {version!r}"}, 404)
        folder = _exported(cfg, version, format)
        if folder is None:
            with lock:  # one export at a time; a second request waits and finds it done
                folder = _on_demand(cfg, host.registry, cache, version, format)
        name = MANIFEST if file == "manifest.json" else FILES[format]
        path = folder / name
        digest = _sha256(path)
        headers = {"X-Driftloop-Sha256": digest, "ETag": f'"{digest}"',
                   "X-Driftloop-Version": version, "Cache-Control": "no-cache"}
        if request.headers.get("if-none-match") == f'"{digest}"':
            return Response(status_code=304, headers=headers)
        media = "application/json" if name == MANIFEST else "application/octet-stream"
        return FileResponse(path, media_type=media, headers=headers, filename=name)

    return router


def _exported(cfg: DriftloopConfig, version: str, fmt: str) -> Path | None:
    """The export directory's folder of ``version`` if it holds ``fmt``."""
    if cfg.export is None:
        return None
    folder = cfg.export.dir / version
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return folder if fmt in manifest.get("formats", {}) else None


def _on_demand(cfg: DriftloopConfig, registry: Registry, cache: Path, version: str,
               fmt: str) -> Path:
    folder = cache / version / fmt
    if (folder / MANIFEST).is_file():
        return folder
    tmp = cache / version / f".tmp-{fmt}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        export_version(cfg, registry, version, [fmt], tmp,
                       opset=cfg.export.opset if cfg.export else 17)
        os.replace(tmp, folder)
    except ExportError as err:
        raise _error(409, str(err)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
