"""The serving client: standalone (standard library only), hot reload from the export
directory and from the API (sha256 checked; a bad file keeps the old model), and the
non-blocking row logger's batching, retries and dropped count."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import uvicorn

from runtime.handoff import client as client_module
from runtime.handoff.client import ChampionWatcher, LoadError, RowLogger
from runtime.handoff.export import publish
from runtime.handoff.settings import ExportConfig
from runtime.service.api import create_app
from runtime.store.unit import golden_sets, load_unit
from tests.runtime.handoff.conftest import Make

CLIENT = Path(client_module.__file__)
LAZY = {"numpy", "onnxruntime", "torch", "safetensors"}


def test_the_client_needs_only_the_standard_library(tmp_path: Path) -> None:
    tree = ast.parse(CLIENT.read_text())
    top = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    top |= {(n.module or "").split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom)}
    assert top - {"__future__"} <= set(sys.stdlib_module_names), top
    lazy = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
            for a in n.names}
    lazy |= {(n.module or "").split(".")[0] for n in ast.walk(tree)
             if isinstance(n, ast.ImportFrom)}
    assert lazy - set(sys.stdlib_module_names) - {"__future__"} <= LAZY
    # copied next to a serving script, outside driftloop's tree: it imports on its own
    shutil.copy(CLIENT, tmp_path / "driftloop_client.py")
    probe = ("import sys, driftloop_client; "
             "bad = [m for m in sys.modules if m.split('.')[0] in "
             "{'runtime', 'detectors', 'strategies', 'numpy', 'torch'}]; "
             "assert not bad, bad; print('ok')")
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin"}, check=False)
    assert done.stdout.strip() == "ok", done.stderr


def _expected(cfg: Any, registry: Any, version: str) -> tuple[np.ndarray, np.ndarray]:
    x = golden_sets(registry, [version])[version][0].astype(np.float32)
    with torch.no_grad():
        return x, load_unit(registry, cfg, version).model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "safetensors"])
def test_watcher_hot_reloads_the_export_directory(
    tmp_path: Path, make_registry: Make, fmt: str
) -> None:
    cfg, registry = make_registry(versions=3)
    root = tmp_path / "exports"
    settings = ExportConfig(dir=root, formats=[fmt])
    publish(cfg, registry, "v1", settings)
    from strategies.models import MLP

    seen: list[str] = []
    watcher = ChampionWatcher(root, format=fmt, build=lambda: MLP(4, 3, [8], 0.0),
                              on_change=lambda c: seen.append(c.version))
    assert watcher.check() and watcher.champion is not None
    x, want = _expected(cfg, registry, "v1")
    np.testing.assert_allclose(watcher.champion.logits(x), want, atol=1e-4)
    version, labels = watcher.predict(x[:2])
    assert version == "v1" and labels == [int(i) for i in want[:2].argmax(axis=1)]
    assert not watcher.check()  # nothing changed

    publish(cfg, registry, "v2", settings)
    assert watcher.check() and watcher.predict(x[:1])[0] == "v2"

    publish(cfg, registry, "v3", settings)  # then the file is damaged under the manifest
    model_file = root / "v3" / client_module.FILES[fmt]
    model_file.write_bytes(model_file.read_bytes()[:-10] + b"0123456789")
    assert not watcher.check()
    assert watcher.champion.version == "v2"  # the old model keeps serving
    assert watcher.last_error is not None and "does not match the manifest's" in watcher.last_error
    assert seen == ["v1", "v2"]


def test_watcher_before_any_export_and_a_missing_format(
    tmp_path: Path, make_registry: Make
) -> None:
    cfg, registry = make_registry()
    root = tmp_path / "exports"
    watcher = ChampionWatcher(root, format="onnx")
    assert not watcher.check() and watcher.champion is None
    with pytest.raises(LoadError, match="no champion loaded yet"):
        watcher.predict([[0.0] * 4])
    publish(cfg, registry, "v1", ExportConfig(dir=root, formats=["safetensors"]))
    assert not watcher.check()
    assert watcher.last_error == "version v1 was not exported as onnx (exported: safetensors)"


class _Server:
    """The daemon's API app over a registry, served by uvicorn on 127.0.0.1 (a thread)."""

    def __init__(self, cfg: Any, registry: Any) -> None:
        host = SimpleNamespace(cfg=cfg, db=registry.db, events=registry.events,
                               registry=registry, ingestor=None, unit=None,
                               runtime_status=lambda: {})
        app = create_app(host, cfg.api, "write-token")  # type: ignore[arg-type]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0,
                                                    log_config=None, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *_: Any) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def test_watcher_follows_the_api_and_the_artifact_endpoint(
    tmp_path: Path, make_registry: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    monkeypatch.setenv("ART_TOKEN", "read-token")
    cfg, registry = make_registry(versions=2, api={"port": 0, "read_token_env": "ART_TOKEN"})
    with _Server(cfg, registry) as url:
        r = httpx.get(f"{url}/v1/champion")
        assert r.json()["champion"] == "v2" and r.json()["export"] is None
        art = f"{url}/v1/models/v1/artifact"
        assert httpx.get(art, params={"format": "onnx"}).status_code == 401
        bad = httpx.get(art, params={"format": "onnx"}, headers={"Authorization": "Bearer x"})
        assert bad.status_code == 403 and bad.json() == {"error": "the bearer token is not valid"}
        auth = {"Authorization": "Bearer read-token"}
        got = httpx.get(art, params={"format": "onnx", "file": "manifest.json"}, headers=auth)
        assert got.status_code == 200 and got.json()["version"] == "v1"
        model = httpx.get(art, params={"format": "onnx"}, headers=auth)
        import hashlib

        assert model.headers["x-driftloop-sha256"] == hashlib.sha256(model.content).hexdigest()
        assert got.json()["files"]["model.onnx"]["sha256"] == model.headers["x-driftloop-sha256"]
        writer = httpx.get(art, params={"format": "onnx"},
                           headers={"Authorization": "Bearer write-token"})
        assert writer.status_code == 200
        missing = httpx.get(f"{url}/v1/models/v9/artifact", params={"format": "onnx"},
                            headers=auth)
        assert missing.status_code == 404 and "unknown model version 'v9'" in missing.text

        watcher = ChampionWatcher(url, format="torchscript", token="read-token")
        assert watcher.check()
        x, want = _expected(cfg, registry, "v2")
        assert watcher.champion is not None and watcher.champion.version == "v2"
        np.testing.assert_allclose(watcher.champion.logits(x), want, atol=1e-4)
        registry.rollback("v1")
        assert watcher.check() and watcher.predict(x[:1])[0] == "v1"


class _Ingest:
    """A stand-in for ``POST /v1/ingest``: records batches, can be down for a while."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, dict[str, Any]]] = []
        self.down_for = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if outer.down_for > 0:
                    outer.down_for -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                outer.batches.append((self.headers["Idempotency-Key"], body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def ingest() -> Iterator[_Ingest]:
    server = _Ingest()
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_row_logger_batches_retries_and_never_blocks(ingest: _Ingest) -> None:
    rows = RowLogger(ingest.url, token="t", batch_rows=50, flush_seconds=0.2,
                     backoff_seconds=0.05)
    ingest.down_for = 2  # the first batch meets a daemon that is restarting
    began = time.monotonic()
    for i in range(120):
        assert rows.log([float(i), 1.0], label=i % 2 if i < 100 else None)
    assert time.monotonic() - began < 0.1
    assert rows.flush(20)
    rows.close()
    sent = [r for _, b in ingest.batches for r in b["rows"]]
    assert sorted(r[0] for r in sent) == [float(i) for i in range(120)]
    assert rows.sent == 120 and rows.dropped == 0
    assert all(len(b["rows"]) <= 50 for _, b in ingest.batches)
    labels = [lab for _, b in ingest.batches for lab in b.get("labels") or [None] * len(b["rows"])]
    assert labels.count(None) == 20


def test_row_logger_counts_what_it_drops_when_the_daemon_is_away() -> None:
    rows = RowLogger("http://127.0.0.1:9", batch_rows=10, flush_seconds=0.05,
                     max_queue_rows=30, retries=1, backoff_seconds=0.05, timeout=1)
    accepted = sum(rows.log([1.0]) for _ in range(100))
    assert accepted <= 40  # the queue holds 30, the thread may have taken a batch
    assert rows.flush(20)
    rows.close()
    assert rows.sent == 0 and rows.dropped == 100
