"""The publisher keeps export.dir/current on the champion, whoever changed it; an export
that fails leaves current on the last good one; an unwritable directory stops the start."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runtime.handoff.export import ExportError, current_version
from runtime.handoff.publisher import Publisher
from runtime.handoff.workers import Handoff
from tests.runtime.handoff.conftest import Make


def test_publisher_follows_promotions_and_rollbacks(tmp_path: Path, make_registry: Make) -> None:
    root = tmp_path / "exports"
    cfg, registry = make_registry(versions=2, export={"dir": str(root), "formats": ["onnx"]})
    handoff = Handoff(cfg, registry.db, registry.events, registry)
    assert handoff.dispatcher is None and handoff.publisher is not None
    handoff.start()
    try:
        deadline = time.monotonic() + 60
        while current_version(root) != "v2" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert current_version(root) == "v2"
        registry.rollback("v1", reason="manual")  # as the CLI does, outside the daemon
        handoff.wake()
        while current_version(root) != "v1" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert current_version(root) == "v1"
    finally:
        handoff.stop()
    assert handoff.publisher.status() == {"current": "v1", "published": "v1", "error": None}


def test_a_failed_export_keeps_current_and_is_retried_later(
    tmp_path: Path, make_registry: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "exports"
    cfg, registry = make_registry(versions=1, export={"dir": str(root), "formats": ["onnx"]})
    pub = Publisher(cfg, registry, retry_seconds=3600)
    assert pub.step() == "v1"
    from runtime.handoff import publisher as module
    from runtime.store.unit import new_buffer, new_model, save_unit

    x = registry.load("v1").tensors["golden"]["x"].numpy()
    save_unit(registry, "v2", model=new_model(cfg, seed=5), buffer=new_buffer(cfg), reference=x,
              golden=(x, x[:, 0].astype("int64") * 0), meta={"golden_index": ["v1"]},
              parent="v1")
    registry.promote("v2", {"reason": "test"})

    def refuse(*_: object) -> None:
        raise ExportError("onnx: outputs differ from PyTorch's by 0.5 (limit 0.0001)")

    monkeypatch.setattr(module, "publish", refuse)
    assert pub.step() is None and current_version(root) == "v1"
    assert pub.error == "v2: onnx: outputs differ from PyTorch's by 0.5 (limit 0.0001)"
    monkeypatch.undo()
    assert pub.step() is None  # not before retry_seconds


def test_an_unwritable_export_directory_stops_the_start(
    tmp_path: Path, make_registry: Make
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    cfg, registry = make_registry(export={"dir": str(blocker / "exports")})
    with pytest.raises(ExportError, match=r"^cannot write exports to .*file/exports: "):
        Publisher(cfg, registry).start()
