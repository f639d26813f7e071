"""The model registry, on SQLite and (marked ``postgres``) on the PostgreSQL server."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import torch
from sqlalchemy import select, update

from runtime.store import events as ev
from runtime.store import versions as registry_module
from runtime.store.db import Database, model_versions, to_json
from runtime.store.events import EventLog
from runtime.store.versions import IntegrityError, Registry


# Same as tests/runtime/store/test_events.py; belongs in a conftest.py once there is one.
@pytest.fixture
def log(db: Database) -> EventLog:
    return EventLog(db, clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))


@pytest.fixture
def reg(db: Database, log: EventLog, tmp_path: Path) -> Registry:
    return Registry(db, tmp_path / "models", log)


def unit(seed: int) -> dict[str, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return {
        "model": {"w": torch.randn(4, 3, generator=g), "b": torch.zeros(3)},
        "buffer": {"x": torch.randn(5, 3, generator=g), "y": torch.arange(5)},
    }


def add(reg: Registry, seed: int = 0, parent: str | None = None) -> str:
    version = reg.next_version()
    reg.save(version, tensors=unit(seed), meta={"strategy": "replay"}, parent=parent)
    return version


def statuses(reg: Registry) -> dict[str, str]:
    return {mv.version: mv.status for mv in reg.list()}


# -- saving and loading -------------------------------------------------------------------


def test_save_then_load_round_trips(reg: Registry, tmp_path: Path) -> None:
    assert reg.next_version() == "v1"
    tensors = unit(0)
    tensors["model"]["t"] = torch.randn(3, 4).t()  # not contiguous
    saved = reg.save("v1", tensors=tensors, meta={"metrics": {"acc": 0.9}}, parent=None)
    assert reg.next_version() == "v2"
    assert saved == reg.get("v1")
    assert (saved.seq, saved.parent, saved.status) == (1, None, "candidate")
    loaded = reg.load("v1")
    assert loaded.version == saved
    assert loaded.tensors.keys() == tensors.keys()
    for stem, group in tensors.items():
        assert loaded.tensors[stem].keys() == group.keys()
        for name, tensor in group.items():
            assert torch.equal(loaded.tensors[stem][name], tensor)
            assert loaded.tensors[stem][name].dtype == tensor.dtype
    on_disk = json.loads((tmp_path / "models" / "v1" / "meta.json").read_text())
    assert on_disk == saved.meta
    assert on_disk["metrics"] == {"acc": 0.9}
    assert set(on_disk["files"]) == {"model", "buffer"}
    assert on_disk["version"] == "v1" and on_disk["created_at"] == "2026-01-01T00:00:00.000Z"
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["v1"]


def test_tied_tensors_are_saved(reg: Registry) -> None:
    w = torch.randn(3, 3)
    reg.save("v1", tensors={"model": {"a": w, "b": w, "row": w[0]}}, meta={}, parent=None)
    got = reg.load("v1").tensors["model"]
    assert torch.equal(got["b"], w) and torch.equal(got["row"], w[0])


def test_lineage_and_listing(reg: Registry) -> None:
    v1 = add(reg)
    v2 = add(reg, seed=1, parent=v1)
    assert [mv.version for mv in reg.list()] == [v1, v2]
    assert reg.get(v2).parent == v1
    with pytest.raises(KeyError, match="unknown model version 'v9'"):
        reg.get("v9")
    with pytest.raises(KeyError, match="'v9'"):
        reg.save("v3", tensors=unit(0), meta={}, parent="v9")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"version": "3"}, "must look like 'v1'"),
        ({"version": "v0"}, "must look like 'v1'"),
        ({"status": "champion"}, "promote"),
        ({"meta": {"files": {}}}, r"\['files'\] are set by the registry"),
        ({"meta": {"loss": float("nan")}}, "NaN"),
        ({"tensors": {"Model": {"w": torch.ones(1)}}}, "lowercase identifiers"),
        ({"tensors": {"meta": {"w": torch.ones(1)}}}, "other than 'meta'"),
        ({"tensors": {}}, "no tensor groups"),
    ],
)
def test_save_refuses_bad_input_before_writing(
    reg: Registry, tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    args: dict[str, Any] = {"version": "v1", "tensors": unit(0), "meta": {}, "parent": None}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        reg.save(args.pop("version"), **args)
    assert reg.list() == []
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_save_refuses_an_existing_version(reg: Registry) -> None:
    add(reg)
    with pytest.raises(ValueError, match="v1 already exists"):
        reg.save("v1", tensors=unit(1), meta={}, parent=None)


def test_failed_write_leaves_no_directory_and_no_row(
    reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(path: Path, obj: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(registry_module, "write_json_atomic", fail)
    with pytest.raises(OSError, match="disk full"):
        add(reg)
    assert reg.list() == []
    assert list((tmp_path / "models").iterdir()) == []


def test_unregistered_leftover_directory_is_replaced(reg: Registry, tmp_path: Path) -> None:
    (tmp_path / "models" / "v1").mkdir(parents=True)
    (tmp_path / "models" / "v1" / "model.safetensors").write_bytes(b"half")
    (tmp_path / "models" / ".tmp-v1").mkdir()
    add(reg)
    reg.load("v1")
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["v1"]


# -- integrity ----------------------------------------------------------------------------


def test_changed_bytes_fail_the_checksum(reg: Registry, tmp_path: Path) -> None:
    add(reg)
    path = tmp_path / "models" / "v1" / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    for check in (reg.load, reg.verify):
        with pytest.raises(
            IntegrityError, match=r"model v1: model\.safetensors sha256 \w+ does not"
        ):
            check("v1")


def test_truncated_file_is_detected(reg: Registry, tmp_path: Path) -> None:
    add(reg)
    path = tmp_path / "models" / "v1" / "buffer.safetensors"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(
        IntegrityError,
        match=r"model v1: buffer.safetensors has \d+ bytes, \d+ were recorded \(truncated",
    ):
        reg.load("v1")


def test_missing_file_is_detected(reg: Registry, tmp_path: Path) -> None:
    add(reg)
    (tmp_path / "models" / "v1" / "model.safetensors").unlink()
    with pytest.raises(IntegrityError, match=r"model v1: model\.safetensors is missing"):
        reg.verify("v1")


def test_the_database_record_is_the_source_of_truth(
    reg: Registry, db: Database, tmp_path: Path
) -> None:
    """A file that matches a rewritten meta.json but not the database row is refused;
    garbage whose checksum the row does record is refused as unreadable."""
    add(reg)
    garbage = b"\x08\x00\x00\x00\x00\x00\x00\x00not json"
    record = {"sha256": hashlib.sha256(garbage).hexdigest(), "bytes": len(garbage)}
    (tmp_path / "models" / "v1" / "model.safetensors").write_bytes(garbage)
    meta = reg.get("v1").meta
    meta["files"]["model"] = record
    (tmp_path / "models" / "v1" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(IntegrityError, match=r"model\.safetensors has 16 bytes, \d+ were recorded"):
        reg.load("v1")
    with db.begin() as conn:
        conn.execute(
            update(model_versions)
            .where(model_versions.c.version == "v1")
            .values(meta=to_json(meta))
        )
    with pytest.raises(IntegrityError, match=r"model v1: model\.safetensors is not a readable"):
        reg.load("v1")


# -- retention ----------------------------------------------------------------------------


def test_prune_keeps_champions_former_champions_and_the_newest_candidates(
    reg: Registry, tmp_path: Path
) -> None:
    versions = [add(reg, seed) for seed in range(6)]
    reg.promote("v1", {})
    reg.promote("v3", {})
    reg.set_status("v2", "refused")
    reg.set_status("v1", "candidate")  # a former champion stays a rollback target
    assert reg.prune(keep_candidates=2) == ["v2", "v4"]
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["v1", "v3", "v5", "v6"]
    assert [mv.version for mv in reg.list()] == versions  # rows stay: no renumbering
    assert reg.next_version() == "v7"
    assert "pruned_at" in reg.get("v2").meta
    with pytest.raises(IntegrityError, match="model v4: its files were removed by retention"):
        reg.load("v4")
    with pytest.raises(IntegrityError, match="removed by retention"):
        reg.promote("v4", {})
    assert reg.prune(keep_candidates=2) == []
    assert reg.prune(keep_candidates=0) == ["v5", "v6"]
    reg.rollback(to="v1")
    with pytest.raises(ValueError, match=">= 0"):
        reg.prune(keep_candidates=-1)


def test_prune_never_touches_a_protected_candidate(reg: Registry) -> None:
    for seed in range(4):
        add(reg, seed)
    reg.promote("v1", {})
    assert reg.prune(keep_candidates=0, protect=frozenset({"v3"})) == ["v2", "v4"]
    reg.load("v3")


def test_rollback_records_its_evidence(reg: Registry, log: EventLog) -> None:
    add(reg, 0)
    add(reg, 1)
    reg.promote("v1", {})
    reg.promote("v2", {})
    event = reg.rollback(reason="automatic: errors rose", evidence={"p_value": 0.001})
    assert event.raw == {
        "from": "v2",
        "to": "v1",
        "reason": "automatic: errors rose",
        "evidence": {"p_value": 0.001},
    }
    loaded = reg.load("v1").tensors
    assert torch.equal(loaded["model"]["w"], unit(0)["model"]["w"])
    assert torch.equal(loaded["buffer"]["x"], unit(0)["buffer"]["x"])


# -- promotion ----------------------------------------------------------------------------


def test_first_and_second_promotion(reg: Registry, log: EventLog) -> None:
    v1, v2 = add(reg), add(reg, 1, parent="v1")
    assert reg.champion() is None
    first = reg.promote(v1, {"reason": "bootstrap"})
    assert first.kind == ev.MODEL_PROMOTED and first.model_version == v1
    assert first.raw == {"reason": "bootstrap", "previous_champion": None}
    second = reg.promote(v2, {"gate": {"passed": True}})
    assert second.raw == {"gate": {"passed": True}, "previous_champion": v1}
    assert reg.champion() == v2
    assert statuses(reg) == {v1: "retired", v2: "champion"}
    assert log.list(kinds=[ev.MODEL_PROMOTED]) == [first, second]
    assert reg.previous_champion() == v1


def test_promote_is_one_transaction(
    reg: Registry, log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1, v2 = add(reg), add(reg, 1)
    reg.promote(v1, {})
    before = (reg.champion(), statuses(reg), log.count())

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("crash while appending the event")

    monkeypatch.setattr(log, "append", crash)
    with pytest.raises(RuntimeError, match="crash while appending"):
        reg.promote(v2, {})
    monkeypatch.undo()
    assert (
        (reg.champion(), statuses(reg), log.count())
        == before
        == (
            v1,
            {v1: "champion", v2: "candidate"},
            1,
        )
    )
    # an unserializable payload fails inside the transaction too, after the pointer moved
    with pytest.raises(ValueError, match="NaN"):
        reg.promote(v2, {"acc": float("nan")})
    assert (reg.champion(), statuses(reg), log.count()) == before


def test_promote_refuses_what_is_not_a_verified_candidate(reg: Registry, tmp_path: Path) -> None:
    v1, v2, v3 = add(reg), add(reg, 1), add(reg, 2)
    reg.promote(v1, {})
    with pytest.raises(ValueError, match="status is 'champion'"):
        reg.promote(v1, {})
    reg.set_status(v2, "refused")
    with pytest.raises(ValueError, match="status is 'refused'"):
        reg.promote(v2, {})
    with pytest.raises(KeyError):
        reg.promote("v9", {})
    with pytest.raises(ValueError, match="previous_champion"):
        reg.promote(v3, {"previous_champion": "v0"})
    (tmp_path / "models" / v3 / "model.safetensors").write_bytes(b"")
    with pytest.raises(IntegrityError, match="v3"):
        reg.promote(v3, {})
    assert reg.champion() == v1


def test_set_status(reg: Registry) -> None:
    v1, v2 = add(reg), add(reg, 1)
    reg.promote(v1, {})
    assert reg.set_status(v2, "refused").status == "refused" == reg.get(v2).status
    with pytest.raises(ValueError, match="v1 is the champion"):
        reg.set_status(v1, "retired")
    with pytest.raises(ValueError, match="champions are made by promote"):
        reg.set_status(v2, "champion")


# -- rollback -----------------------------------------------------------------------------


def test_rollback_walks_back_the_chain_of_champions(reg: Registry, log: EventLog) -> None:
    v1, v2, v3 = add(reg), add(reg, 1), add(reg, 2)
    for v in (v1, v2, v3):
        reg.promote(v, {})
    assert reg.champion_history() == [v1, v2, v3]
    event = reg.rollback()
    assert event.kind == ev.MODEL_ROLLED_BACK and event.model_version == v2
    assert event.raw == {"from": v3, "to": v2, "reason": "manual"}
    assert reg.champion() == v2
    assert statuses(reg) == {v1: "retired", v2: "champion", v3: "retired"}
    assert reg.previous_champion() == v1
    reg.rollback(reason="still bad")
    assert reg.champion() == v1 and reg.previous_champion() is None
    with pytest.raises(ValueError, match="v1 has no previous champion"):
        reg.rollback()
    assert log.last(ev.MODEL_ROLLED_BACK) is not None
    assert log.last(ev.MODEL_ROLLED_BACK).raw["reason"] == "still bad"  # type: ignore[union-attr]


def test_rollback_to_a_named_earlier_champion(reg: Registry) -> None:
    v1, v2, v3, v4 = add(reg), add(reg, 1), add(reg, 2), add(reg, 3)
    for v in (v1, v2, v3):
        reg.promote(v, {})
    reg.rollback(to=v1, reason="regression")
    assert reg.champion() == v1 and reg.champion_history() == [v1]
    reg.promote(v4, {})
    assert reg.previous_champion() == v1
    reg.rollback(to=v3)  # forward to a former champion is allowed
    assert reg.champion_history() == [v1, v4, v3]
    assert reg.champion_history()[-1] == reg.champion()


def test_rollback_to_a_never_promoted_version_is_refused(reg: Registry, log: EventLog) -> None:
    v1, v2 = add(reg), add(reg, 1)
    reg.promote(v1, {})
    count = log.count()
    with pytest.raises(ValueError, match="cannot roll back to v2: it was never promoted"):
        reg.rollback(to=v2)
    with pytest.raises(ValueError, match="already the champion"):
        reg.rollback(to=v1)
    with pytest.raises(KeyError):
        reg.rollback(to="v9")
    assert reg.champion() == v1 and log.count() == count


def test_rollback_without_champion_is_refused(reg: Registry) -> None:
    add(reg)
    with pytest.raises(ValueError, match="no champion yet"):
        reg.rollback()


def test_rollback_verifies_the_target_first(reg: Registry, log: EventLog, tmp_path: Path) -> None:
    v1, v2 = add(reg), add(reg, 1)
    reg.promote(v1, {})
    reg.promote(v2, {})
    (tmp_path / "models" / v1 / "buffer.safetensors").unlink()
    with pytest.raises(IntegrityError, match=r"model v1: buffer\.safetensors is missing"):
        reg.rollback()
    assert reg.champion() == v2
    assert log.count(ev.MODEL_ROLLED_BACK) == 0
    assert statuses(reg) == {v1: "retired", v2: "champion"}


def test_rollback_is_one_transaction(
    reg: Registry, log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1, v2 = add(reg), add(reg, 1)
    reg.promote(v1, {})
    reg.promote(v2, {})

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("crash")

    monkeypatch.setattr(log, "append", crash)
    with pytest.raises(RuntimeError):
        reg.rollback()
    monkeypatch.undo()
    assert reg.champion() == v2
    assert statuses(reg) == {v1: "retired", v2: "champion"}
    with reg.db.connect() as conn:
        assert conn.execute(select(model_versions.c.status)).scalars().all().count("champion") == 1
