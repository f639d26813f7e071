"""A version's files verify only when they parse: a file that is not safetensors, or
holds tensors other than recorded, never becomes champion, even with a matching sha256
in the database; ``status`` and ``models`` say so."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as st_save
from sqlalchemy import update

from runtime.review.text import file_problems, models_text, status_dict, status_text
from runtime.store.db import Database, model_versions, to_json
from runtime.store.events import EventLog
from runtime.store.versions import IntegrityError, Registry


@pytest.fixture
def reg(db: Database, tmp_path: Path) -> Registry:
    return Registry(
        db, tmp_path / "models", EventLog(db, clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    )


def _add(reg: Registry, seed: int) -> str:
    g = torch.Generator().manual_seed(seed)
    version = reg.next_version()
    tensors = {"model": {"w": torch.randn(4, 3, generator=g)}, "buffer": {"x": torch.ones(2)}}
    reg.save(version, tensors=tensors, meta={}, parent=None)
    return version


def _tamper(reg: Registry, version: str, data: bytes) -> None:
    """Replace the weights and make the database record match them (size and sha256)."""
    (reg.path(version) / "model.safetensors").write_bytes(data)
    meta = reg.get(version).meta
    meta["files"]["model"].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    with reg.db.begin() as conn:
        conn.execute(
            update(model_versions)
            .where(model_versions.c.version == version)
            .values(meta=to_json(meta))
        )


def _pickle() -> bytes:
    buf = io.BytesIO()
    torch.save({"w": torch.randn(4, 3)}, buf)
    return buf.getvalue()


def test_a_pickle_with_a_matching_sha256_is_no_rollback_target(reg: Registry) -> None:
    v1, v2 = _add(reg, 1), _add(reg, 2)
    reg.promote(v1, {})
    reg.promote(v2, {})
    _tamper(reg, v1, _pickle())
    with pytest.raises(
        IntegrityError, match=r"v1: model\.safetensors is not a readable safetensors"
    ):
        reg.rollback(to=v1)
    assert reg.champion() == v2
    v3 = _add(reg, 3)
    _tamper(reg, v3, _pickle())
    with pytest.raises(IntegrityError, match="not a readable safetensors"):
        reg.promote(v3, {})
    assert reg.champion() == v2


def test_tensors_other_than_recorded_do_not_verify(reg: Registry) -> None:
    v1 = _add(reg, 1)
    _tamper(reg, v1, st_save({"w": torch.randn(3, 4)}))  # a valid file, another shape
    with pytest.raises(IntegrityError, match="holds tensors other than recorded"):
        reg.promote(v1, {})
    with pytest.raises(IntegrityError, match="other than recorded"):
        reg.load(v1)


def test_status_and_models_say_when_files_do_not_verify(reg: Registry, tmp_path: Path) -> None:
    v1, v2 = _add(reg, 1), _add(reg, 2)
    reg.promote(v1, {})
    st = status_dict(tmp_path, reg.db, reg.events, reg)
    assert st["champion_files"] == "verified" and "DO NOT VERIFY" not in status_text(st)
    _tamper(reg, v1, _pickle())
    st = status_dict(tmp_path, reg.db, reg.events, reg)
    assert "not a readable safetensors" in st["champion_files"]
    assert "FILES DO NOT VERIFY" in status_text(st)
    versions = reg.list()
    problems = file_problems(reg, versions)
    assert set(problems) == {v1}
    text = models_text(versions, reg.champion(), problems)
    assert "! v1 (the champion) files do not verify" in text
    assert f" {v2} " in text and f"!{v2}" not in text


def test_unchanged_files_are_not_hashed_again_and_a_rewrite_is_still_caught(
    reg: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import runtime.store.versions as versions_module

    v1 = _add(reg, 1)
    hashed: list[Path] = []
    real = versions_module.sha256_file
    monkeypatch.setattr(versions_module, "sha256_file", lambda p: hashed.append(p) or real(p))
    assert reg.problem(v1) is None and reg.problem(v1) is None
    assert len(hashed) == 2  # model and buffer, once
    path = reg.path(v1) / "model.safetensors"
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size; mtime put back as it was: only ctime tells
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    problem = reg.problem(v1)
    assert problem is not None and "sha256" in problem
