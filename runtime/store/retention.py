"""Retention of model files: :func:`prune` (``Registry.prune`` calls it).

Old never-promoted versions lose their files; their rows stay (lineage, events, no
renumbering) marked ``pruned_at``. The row is marked before the files go, so a crash
leaves an unreferenced directory, never a row pointing at missing files.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from sqlalchemy import update

from runtime.store.atomic import fsync_dir
from runtime.store.db import Clock, Database, model_versions, to_json, utcnow
from runtime.store.version_files import ModelVersion

log = logging.getLogger(__name__)


class Registry(Protocol):
    """What pruning uses of the registry (:class:`runtime.store.versions.Registry`, which
    imports this module: a protocol keeps the two free of an import cycle)."""

    @property
    def db(self) -> Database: ...

    @property
    def models_dir(self) -> Path: ...

    @property
    def clock(self) -> Clock | None: ...

    def promoted_versions(self) -> set[str]: ...

    def list(self) -> Iterable[ModelVersion]: ...

    def path(self, version: str) -> Path: ...


def prune(reg: Registry, keep_candidates: int, protect: frozenset[str] = frozenset()) -> list[str]:
    """Delete the files of old never-promoted versions, keeping the newest ``keep_candidates``.

    Only ``candidate`` and ``refused`` versions that were never champion are pruned;
    champions and former champions (rollback targets) always keep their files. The
    row stays (lineage, events) with ``meta["pruned_at"]`` set, so versions are never
    renumbered; loading a pruned version raises IntegrityError saying so. Versions in
    ``protect`` (a candidate awaiting approval or in shadow) are never pruned.

    Returns
    -------
    list of str
        The versions pruned now, oldest first.
    """
    if keep_candidates < 0:
        raise ValueError(f"keep_candidates must be >= 0, got {keep_candidates}")
    promoted = reg.promoted_versions()
    prunable = [
        mv
        for mv in reg.list()
        if mv.status in {"candidate", "refused"}
        and mv.version not in promoted
        and mv.version not in protect
        and "pruned_at" not in mv.meta
    ]
    doomed = prunable[: max(0, len(prunable) - keep_candidates)]
    return [mv.version for mv in doomed if _prune_one(reg, mv)]


def _prune_one(reg: Registry, mv: ModelVersion) -> bool:
    # The row is marked first: a crash then leaves an unreferenced directory, never a
    # row pointing at missing files.
    meta = {**mv.meta, "pruned_at": utcnow(reg.clock)}
    with reg.db.begin() as conn:
        marked = conn.execute(
            update(model_versions)
            .where(model_versions.c.version == mv.version)
            .where(model_versions.c.status.in_(["candidate", "refused"]))
            .values(meta=to_json(meta))
        ).rowcount
    if marked != 1:  # promoted meanwhile
        return False
    path = reg.path(mv.version)
    if path.exists():
        trash = reg.models_dir / f".pruned-{mv.version}"
        shutil.rmtree(trash, ignore_errors=True)
        os.rename(path, trash)
        fsync_dir(reg.models_dir)
        shutil.rmtree(trash)
    log.info("pruned the files of model %s", mv.version)
    return True
