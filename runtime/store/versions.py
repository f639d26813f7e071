"""Model versions: weights, rehearsal buffer and reference window as one versioned unit.

Layout: ``models/<version>/<stem>.safetensors`` for each tensor group plus ``meta.json``.
A version's directory is written complete under ``models/.tmp-<version>`` and renamed into
place before its database row exists, so a row always points at whole files. The row's
``meta["files"]`` (sha256, size, tensor layout) is the source of truth; every load and
verification checks it, and that the file parses (runtime/store/version_files.py). Only
safetensors and JSON are read back: nothing is unpickled.

Champion changes (:meth:`Registry.promote`, :meth:`Registry.rollback`) switch the
``champion`` pointer, the statuses and append the event in one transaction.

Exceptions
----------
IntegrityError
    A version's file is missing, truncated, not safetensors, or differs from the record.
KeyError
    Unknown version.
ValueError
    An operation that would break the registry's invariants (promote a refused version).
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from sqlalchemy import Connection, Row, func, insert, select, update

from runtime.store import events as ev
from runtime.store import retention
from runtime.store import version_files as files
from runtime.store.atomic import fsync_dir, sha256_file, write_bytes_atomic, write_json_atomic
from runtime.store.db import Database, from_json, model_versions, pointers, to_json, utcnow
from runtime.store.events import Event, EventLog

__all__ = ["STATUSES", "IntegrityError", "LoadedVersion", "ModelVersion", "Registry"]

log = logging.getLogger(__name__)

STATUSES = frozenset({"candidate", "champion", "retired", "refused"})
CHAMPION = "champion"
_VERSION = re.compile(r"v([1-9][0-9]*)")
_STEM = re.compile(r"[a-z][a-z0-9_]{0,63}")
_RESERVED_META = frozenset({"files", "version", "parent", "created_at", "pruned_at"})


class IntegrityError(Exception):
    """A version's stored files do not match what the registry recorded."""


@dataclass(frozen=True)
class ModelVersion:
    """A registered version; ``meta`` includes the recorded ``files`` checksums."""

    version: str
    seq: int
    parent: str | None
    created_at: str
    status: str
    meta: dict[str, Any]


@dataclass(frozen=True)
class LoadedVersion:
    """A version with its tensors, by file stem (``tensors["model"]``, ``["buffer"]``, ...)."""

    version: ModelVersion
    tensors: dict[str, dict[str, torch.Tensor]]


def _row_version(row: Row[Any]) -> ModelVersion:
    return ModelVersion(
        version=row.version,
        seq=int(row.seq),
        parent=row.parent,
        created_at=row.created_at,
        status=row.status,
        meta=from_json(row.meta),
    )


def _check_new(
    version: str, tensors: Mapping[str, Any], meta: Mapping[str, Any], status: str
) -> None:
    """ValueError unless :meth:`Registry.save` may save these."""
    if status not in {"candidate", "refused"}:
        raise ValueError(
            f"cannot save {version} as {status!r}: save as 'candidate' and promote() it"
        )
    reserved = sorted(_RESERVED_META & set(meta))
    if reserved:
        raise ValueError(f"{version}: meta keys {reserved} are set by the registry")
    if not tensors:
        raise ValueError(f"{version}: no tensor groups to save")
    bad = [s for s in tensors if not _STEM.fullmatch(s) or s == "meta"]
    if bad:
        raise ValueError(
            f"{version}: tensor groups must be named by lowercase identifiers "
            f"other than 'meta'; got {bad}"
        )


class Registry:
    """Versions on disk plus their rows, and the champion pointer.

    Parameters
    ----------
    db
        Database with the ``model_versions`` and ``pointers`` tables.
    models_dir
        Directory holding one sub-directory per version (created if missing).
    events
        Log that receives ``model.promoted`` and ``model.rolled_back``.
    clock
        Source of ``created_at`` (defaults to the event log's clock).
    """

    def __init__(
        self,
        db: Database,
        models_dir: Path,
        events: EventLog,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.db = db
        self.models_dir = Path(models_dir)
        self.events = events
        self.clock = clock if clock is not None else events.clock
        self._verified: set[tuple[Any, ...] | None] = set()  # stat_keys that verified

    # -- reading ---------------------------------------------------------------------
    def path(self, version: str) -> Path:
        """The directory of ``version``."""
        return self.models_dir / version

    def next_version(self) -> str:
        """The name the next saved version should take (``v1``, ``v2``, ...)."""
        with self.db.connect() as conn:
            top = conn.execute(select(func.max(model_versions.c.seq))).scalar_one()
        return f"v{(top or 0) + 1}"

    def get(self, version: str) -> ModelVersion:
        """The registered ``version``; KeyError if there is none."""
        with self.db.connect() as conn:
            return self._get(conn, version)

    def _get(self, conn: Connection, version: str, *, lock: bool = False) -> ModelVersion:
        stmt = select(model_versions).where(model_versions.c.version == version)
        if lock and not self.db.is_sqlite:
            stmt = stmt.with_for_update()
        row = conn.execute(stmt).one_or_none()
        if row is None:
            raise KeyError(f"unknown model version {version!r}")
        return _row_version(row)

    def list(self) -> builtins.list[ModelVersion]:
        """Every registered version, oldest first."""
        with self.db.connect() as conn:
            found = conn.execute(select(model_versions).order_by(model_versions.c.seq))
            return [_row_version(row) for row in found]

    def champion(self) -> str | None:
        """The champion's version, or None before the first promotion."""
        with self.db.connect() as conn:
            return self._champion(conn)

    def _champion(self, conn: Connection, *, lock: bool = False) -> str | None:
        stmt = select(pointers.c.value).where(pointers.c.name == CHAMPION)
        if lock and not self.db.is_sqlite:
            stmt = stmt.with_for_update()
        value: str | None = conn.execute(stmt).scalar_one_or_none()
        return value

    def champion_history(self) -> builtins.list[str]:
        """The chain of champions that led to the current one, oldest first.

        A promotion pushes its version; a rollback to ``X`` cuts the chain back to ``X``
        (or pushes ``X`` if it is not on the chain). The last entry is the champion.
        """
        chain: builtins.list[str] = []
        kinds = [ev.MODEL_PROMOTED, ev.MODEL_ROLLED_BACK]
        for event in self.events.list(kinds=kinds):
            target = event.model_version
            if target is None:
                continue
            if event.kind == ev.MODEL_ROLLED_BACK and target in chain:
                del chain[chain.index(target) + 1 :]
            else:
                chain.append(target)
        return chain

    def previous_champion(self) -> str | None:
        """The champion before the current one on :meth:`champion_history`, or None."""
        chain = self.champion_history()
        return chain[-2] if len(chain) >= 2 else None

    def promoted_versions(self) -> set[str]:
        """Every version that has ever been champion."""
        kinds = [ev.MODEL_PROMOTED, ev.MODEL_ROLLED_BACK]
        return {e.model_version for e in self.events.list(kinds=kinds) if e.model_version}

    def verify(self, version: str) -> ModelVersion:
        """Check every recorded file of ``version``: size, sha256, and that it parses as
        safetensors holding the recorded tensors; IntegrityError if not. Every path to
        champion (promote, rollback, an approval) goes through it."""
        mv = self._available(version)
        for stem in mv.meta["files"]:
            path = self._file(mv, stem)
            try:
                size, digest = path.stat().st_size, sha256_file(path)
                files.check_record(mv, stem, size, digest)
                files.check_format(mv, stem, path)
            except files.FileProblem as exc:
                raise IntegrityError(str(exc)) from None
            except FileNotFoundError:
                raise IntegrityError(f"model {version}: {path.name} is missing ({path})") from None
            except OSError as exc:
                raise IntegrityError(
                    f"model {version}: {path.name} cannot be read ({exc})"
                ) from exc
        return mv

    def problem(self, version: str) -> str | None:
        """Why ``version``'s files do not verify, or None (also when pruned: not a fault).
        Files unchanged since they last verified are not hashed again (status asks often)."""
        try:
            mv = self.get(version)
            key = files.stat_key(mv, [self._file(mv, stem) for stem in mv.meta["files"]])
            if "pruned_at" not in mv.meta and (key is None or key not in self._verified):
                self.verify(version)
                self._verified.add(key)  # a None key is never trusted: it is checked first
        except (IntegrityError, KeyError) as err:
            return str(err).strip("'\"")
        return None

    def load(self, version: str) -> LoadedVersion:
        """Read ``version``'s tensors after checking each file against its recorded sha256."""
        mv = self._available(version)
        tensors: dict[str, dict[str, torch.Tensor]] = {}
        for stem in mv.meta["files"]:
            data = self._read_checked(mv, stem)
            try:
                files.check_format_bytes(mv, stem, data)
                tensors[stem] = st_load(data)
            except files.FileProblem as exc:
                raise IntegrityError(str(exc)) from None
            except Exception as exc:  # safetensors raises its own error types
                raise IntegrityError(
                    f"model {version}: {stem}.safetensors is not a readable safetensors file "
                    f"({exc})"
                ) from exc
        return LoadedVersion(version=mv, tensors=tensors)

    def _available(self, version: str) -> ModelVersion:
        mv = self.get(version)
        if "pruned_at" in mv.meta:
            raise IntegrityError(
                f"model {version}: its files were removed by retention at {mv.meta['pruned_at']}"
            )
        return mv

    def _file(self, mv: ModelVersion, stem: str) -> Path:
        return self.path(mv.version) / f"{stem}.safetensors"

    def _read_checked(self, mv: ModelVersion, stem: str) -> bytes:
        path = self._file(mv, stem)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise IntegrityError(f"model {mv.version}: {path.name} is missing ({path})") from None
        except OSError as exc:
            raise IntegrityError(f"model {mv.version}: {path.name} cannot be read ({exc})") from exc
        try:
            files.check_record(mv, stem, len(data), hashlib.sha256(data).hexdigest())
        except files.FileProblem as exc:
            raise IntegrityError(str(exc)) from None
        return data

    # -- writing ---------------------------------------------------------------------
    def save(
        self,
        version: str,
        *,
        tensors: Mapping[str, Mapping[str, torch.Tensor]],
        meta: Mapping[str, Any],
        parent: str | None,
        status: str = "candidate",
    ) -> ModelVersion:
        """Write ``version``'s files, then register it.

        Parameters
        ----------
        version
            ``v<seq>``, normally :meth:`next_version`.
        tensors
            File stem (lowercase identifier, e.g. ``model``, ``buffer``, ``reference``) →
            named tensors. Saved contiguous, on CPU.
        meta
            The caller's lineage and metrics (JSON; no NaN). The keys ``files``,
            ``version``, ``parent`` and ``created_at`` are added here and may not be given
            (nor ``pruned_at``, set by :meth:`prune`).
        parent
            The version this one was trained from, if registered.
        status
            ``candidate`` or ``refused`` (champions are made by :meth:`promote`).
        """
        match = _VERSION.fullmatch(version)
        if match is None:
            raise ValueError(f"version must look like 'v1', 'v2', ...; got {version!r}")
        _check_new(version, tensors, meta, status)
        with self.db.connect() as conn:
            if conn.execute(
                select(model_versions.c.version).where(model_versions.c.version == version)
            ).first():
                raise ValueError(f"model version {version} already exists")
            if parent is not None:
                self._get(conn, parent)

        blobs = {stem: files.serialize(version, stem, group) for stem, group in tensors.items()}
        created_at = utcnow(self.clock)
        full_meta: dict[str, Any] = {
            **meta,
            "files": {stem: files.record(data) for stem, data in blobs.items()},
            "version": version,
            "parent": parent,
            "created_at": created_at,
        }
        meta_text = to_json(full_meta)  # refuses NaN before anything touches the disk

        self._write_dir(version, blobs, full_meta)
        with self.db.begin() as conn:
            conn.execute(
                insert(model_versions).values(
                    version=version,
                    seq=int(match.group(1)),
                    parent=parent,
                    created_at=created_at,
                    status=status,
                    meta=meta_text,
                )
            )
        return ModelVersion(
            version=version,
            seq=int(match.group(1)),
            parent=parent,
            created_at=created_at,
            status=status,
            meta=from_json(meta_text),
        )

    def _write_dir(self, version: str, blobs: dict[str, bytes], meta: dict[str, Any]) -> None:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.models_dir / f".tmp-{version}"
        final = self.path(version)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        try:
            for stem, data in blobs.items():
                write_bytes_atomic(tmp / f"{stem}.safetensors", data)
            write_json_atomic(tmp / "meta.json", meta)
            fsync_dir(tmp)
            if final.exists():
                # No row references it (checked by the caller): left by a crash after rename.
                log.warning("replacing unregistered model directory %s", final)
                shutil.rmtree(final)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(self.models_dir)

    def prune(
        self, keep_candidates: int, protect: frozenset[str] = frozenset()
    ) -> builtins.list[str]:
        """Delete old never-promoted versions' files (:func:`runtime.store.retention.prune`)."""
        return retention.prune(self, keep_candidates, protect)

    def set_status(self, version: str, status: str) -> ModelVersion:
        """Mark a non-champion version ``candidate``, ``refused`` or ``retired``."""
        if status not in STATUSES - {"champion"}:
            raise ValueError(
                f"status must be one of 'candidate', 'refused', 'retired' (got {status!r}); "
                "champions are made by promote() or rollback()"
            )
        with self.db.begin() as conn:
            mv = self._get(conn, version, lock=True)
            if self._champion(conn, lock=True) == version:
                raise ValueError(f"{version} is the champion; promote or roll back another first")
            conn.execute(
                update(model_versions)
                .where(model_versions.c.version == version)
                .values(status=status)
            )
        return ModelVersion(mv.version, mv.seq, mv.parent, mv.created_at, status, mv.meta)

    def promote(self, version: str, payload: ev.ModelPromoted | Mapping[str, Any]) -> Event:
        """Make candidate ``version`` the champion; returns the ``model.promoted`` event.

        The files are verified first. In one transaction: the old champion becomes
        ``retired``, ``version`` becomes ``champion``, the pointer moves and the event is
        appended with ``payload`` plus ``previous_champion``.
        """
        if isinstance(payload, ev.ModelPromoted):
            given = payload.previous_champion is not None
        else:
            given = "previous_champion" in payload
        if given:
            raise ValueError("promote() payload may not set 'previous_champion'; it is recorded")
        mv = self.verify(version)
        if mv.status != "candidate":
            raise ValueError(
                f"cannot promote {version}: its status is {mv.status!r}, not 'candidate' "
                "(use rollback() to return to an earlier champion)"
            )
        with self.db.begin() as conn:
            mv = self._get(conn, version, lock=True)
            if mv.status != "candidate" or "pruned_at" in mv.meta:
                raise ValueError(f"cannot promote {version}: it changed meanwhile (pruned?)")
            previous = self._switch(conn, version)
            done: ev.ModelPromoted | dict[str, Any] = (
                replace(payload, previous_champion=previous)
                if isinstance(payload, ev.ModelPromoted)
                else {**payload, "previous_champion": previous}
            )
            return self.events.append(ev.MODEL_PROMOTED, done, model_version=version, conn=conn)

    def rollback(
        self,
        to: str | None = None,
        reason: str = "manual",
        evidence: Mapping[str, Any] | None = None,
    ) -> Event:
        """Return to an earlier champion; returns the ``model.rolled_back`` event.

        ``to=None`` means :meth:`previous_champion`. The target must have been champion
        before and its files must verify. In one transaction: the current champion becomes
        ``retired``, the target ``champion``, the pointer moves and the event
        ``{"from", "to", "reason"}`` (plus ``"evidence"`` when given) is appended.
        The whole unit returns: weights, rehearsal buffer, reference window and golden-set
        index are all files and meta of the target version.
        """
        current = self.champion()
        if current is None:
            raise ValueError("cannot roll back: there is no champion yet")
        if to is None:
            to = self.previous_champion()
            if to is None:
                raise ValueError(
                    f"cannot roll back: {current} has no previous champion to return to"
                )
        target = self.get(to)
        if to == current:
            raise ValueError(f"cannot roll back to {to}: it is already the champion")
        if to not in self.promoted_versions():
            raise ValueError(
                f"cannot roll back to {to}: it was never promoted "
                "(only earlier champions are rollback targets)"
            )
        if target.status == "refused":
            raise ValueError(f"cannot roll back to {to}: it was marked 'refused'")
        self.verify(to)
        with self.db.begin() as conn:
            previous = self._switch(conn, to, expect=current)
            back = ev.ModelRolledBack(from_=previous, to=to, reason=reason,
                                      evidence=None if evidence is None else dict(evidence))
            return self.events.append(ev.MODEL_ROLLED_BACK, back, model_version=to, conn=conn)

    def _switch(self, conn: Connection, version: str, expect: str | None = None) -> str | None:
        """Move the pointer to ``version`` and fix statuses; returns the old champion."""
        previous = self._champion(conn, lock=True)
        if expect is not None and previous != expect:
            raise ValueError(f"the champion changed from {expect} to {previous} meanwhile")
        if previous is not None:
            conn.execute(
                update(model_versions)
                .where(model_versions.c.version == previous)
                .values(status="retired")
            )
            conn.execute(update(pointers).where(pointers.c.name == CHAMPION).values(value=version))
        else:
            conn.execute(insert(pointers).values(name=CHAMPION, value=version))
        conn.execute(
            update(model_versions)
            .where(model_versions.c.version == version)
            .values(status="champion")
        )
        return previous
