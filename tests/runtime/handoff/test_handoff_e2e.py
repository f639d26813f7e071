"""Both ends of the loop with real processes: a model trained by a plain PyTorch script
is adopted; the daemon runs with export: and hooks:; a serving process that knows only
the client module answers with v1, then with v2 after the drift; a webhook owed when the
daemon is killed (-9) is delivered after its restart, signed; a refused candidate is
told to the receiver too."""

from __future__ import annotations

import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from runtime.handoff import client as client_module
from runtime.handoff.hooks import SIGNATURE_HEADER, signature
from runtime.intake.demo_stream import AGRAWAL_FEATURES
from tests.conftest import SMALL
from tests.runtime.handoff.receiver import Receiver
from tests.runtime.processes import ROOT, Service, free_port, wait_until
from tests.runtime.processes import rows as synthetic

SECRET = "e2e-hook-secret"

USER_MODEL = '''
import torch

class Net(torch.nn.Module):
    """The user's own model: standardise, two hidden layers, logits."""

    def __init__(self, n_features, n_classes, width=32):
        super().__init__()
        self.register_buffer("mu", torch.zeros(n_features))
        self.register_buffer("sd", torch.ones(n_features))
        self.body = torch.nn.Sequential(
            torch.nn.Linear(n_features, width), torch.nn.ReLU(),
            torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, n_classes))

    def forward(self, x):
        return self.body((x - self.mu) / self.sd)

def build(n_features, n_classes, width=32):
    return Net(n_features, n_classes, width)
'''

TRAIN = '''
import sys
import pandas as pd
import torch
from usernet import Net

frame = pd.read_csv(sys.argv[1])
x = torch.tensor(frame.drop(columns=["class", "row_id"]).to_numpy(), dtype=torch.float32)
y = torch.tensor(frame["class"].to_numpy())
torch.manual_seed(0)
net = Net(x.shape[1], 2)
net.mu.copy_(x.mean(0)); net.sd.copy_(x.std(0).clamp(min=1e-6))
opt = torch.optim.Adam(net.parameters(), lr=3e-3)
for epoch in range(30):
    for i in torch.randperm(len(x)).split(64):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x[i]), y[i]).backward()
        opt.step()
torch.save(net.state_dict(), sys.argv[2])
'''

SERVE = '''
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import driftloop_client

watcher = driftloop_client.ChampionWatcher(sys.argv[1], format="onnx", poll_seconds=0.2).start()

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        rows = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["rows"]
        try:
            version, labels = watcher.predict(rows)
            body, status = {"model": version, "labels": labels}, 200
        except driftloop_client.LoadError as err:
            body, status = {"error": str(err)}, 503
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Handler).serve_forever()
'''


def _csv(path: Path, batch: list[Any], prefix: str) -> Path:
    frame = pd.DataFrame([r[0] for r in batch], columns=list(AGRAWAL_FEATURES))
    frame["class"] = [int(r[1]) for r in batch]
    frame["row_id"] = [f"{prefix}{i}" for i in range(len(batch))]
    frame.to_csv(path, index=False)
    return path


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp()


@pytest.mark.slow
def test_adopt_export_serve_and_tell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "usernet.py").write_text(textwrap.dedent(USER_MODEL))
    (tmp_path / "train.py").write_text(textwrap.dedent(TRAIN))
    serving = tmp_path / "serving"
    serving.mkdir()
    shutil.copy(client_module.__file__, serving / "driftloop_client.py")
    (serving / "serve.py").write_text(textwrap.dedent(SERVE))

    data = _csv(tmp_path / "train.csv", synthetic(1000, seed=10), "train-")
    weights = tmp_path / "model.pt"
    plain = {**os.environ, "PYTHONPATH": str(tmp_path)}  # the user's script: no driftloop
    subprocess.run([sys.executable, "train.py", str(data), str(weights)], cwd=tmp_path,
                   env=plain, check=True, timeout=300)

    monkeypatch.setenv("PYTHONPATH", f"{ROOT}{os.pathsep}{tmp_path}")
    monkeypatch.setenv("E2E_HOOK_SECRET", SECRET)
    exports = tmp_path / "exports"
    with Receiver(fail_first=10**6) as rx:  # down until the daemon has been killed
        cfg: dict[str, Any] = {
            **SMALL, "state_dir": str(tmp_path / "state"), "source": {"kind": "http"},
            "model": {"factory": "usernet:build", "kwargs": {"width": 32}},
            "scheduler": {"tick_seconds": 0.1}, "api": {"port": free_port()},
            "export": {"dir": str(exports), "formats": ["onnx", "torchscript"], "keep": 3},
            "hooks": [{"name": "ops", "on": ["model.promoted", "gate.failed"], "url": rx.url,
                       "secret_env": "E2E_HOOK_SECRET", "backoff_seconds": 0.2,
                       "max_backoff_seconds": 1.0, "retries": 100, "timeout_seconds": 2}],
        }
        svc = Service(tmp_path, cfg)
        adopt = subprocess.run(
            [sys.executable, "-m", "runtime.cli.main", "adopt", "--config", str(svc.path),
             "--weights", str(weights), "--data", str(data)],
            cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
        assert adopt.returncode == 0, adopt.stderr
        svc.start()
        port = free_port()
        server = subprocess.Popen([sys.executable, "serve.py", str(exports), str(port)],
                                  cwd=serving, env={"PATH": os.environ.get("PATH", "")})
        ask = [r[0] for r in synthetic(5, seed=99, age=(60, 81))]

        def answer() -> str | None:
            try:
                r = httpx.post(f"http://127.0.0.1:{port}/predict", json={"rows": ask}, timeout=5)
            except httpx.TransportError:
                return None
            return r.json().get("model") if r.status_code == 200 else None

        try:
            wait_until(lambda: answer() == "v1", 120, "the serving process to answer v1", svc)
            svc.ingest(synthetic(800, seed=11, age=(20, 40)), ids=[f"y{i}" for i in range(800)])
            svc.ingest(synthetic(2200, seed=12, age=(60, 81)), ids=[f"o{i}" for i in range(2200)])
            wait_until(lambda: bool(svc.events(kind="model.promoted", model="v2")), 600,
                       "v2 to be promoted after the drift", svc)
            promoted = svc.events(kind="model.promoted", model="v2")[0]
            wait_until(lambda: answer() == "v2", 30, "the serving process to answer v2", svc)
            lag = time.time() - _ts(promoted["ts"])
            print(f"\npromotion -> serving answers v2: {lag:.2f} s")
            assert lag < 15

            manifest = json.loads((exports / "current" / "manifest.json").read_text())
            assert manifest["version"] == "v2"
            for fmt in ("onnx", "torchscript"):
                assert manifest["formats"][fmt]["max_abs_diff"] <= 1e-4

            # the receiver was down: the promotion's hook is owed when the daemon dies
            wait_until(lambda: rx.calls >= 1, 30, "the hook's first (refused) attempt", svc)
            assert not rx.got
            svc.kill(signal.SIGKILL)
            svc.wait(10)
            rx.fail_first = 0
            svc.start()
            wait_until(lambda: any(json.loads(b)["trigger"] == "model.promoted"
                                   for _, b in rx.got), 60, "the owed hook after restart", svc)

            svc.ingest(synthetic(1200, seed=15, age=(60, 81)), ids=[f"m{i}" for i in range(1200)])
            wait_until(lambda: svc.client.get("/v1/status").json()["rows_seen"] >= 1200, 120,
                       "the clean rows to be monitored", svc)
            svc.ingest(synthetic(1400, seed=13, age=(60, 81), noise=0.4),
                       ids=[f"n{i}" for i in range(1400)])
            wait_until(lambda: any(json.loads(b)["trigger"] == "gate.failed" for _, b in rx.got),
                       600, "the refusal's webhook", svc)
            assert answer() == "v2"  # the refused candidate never reached serving
        finally:
            server.terminate()
            server.wait(10)
            svc.stop()
    for headers, body in rx.got:
        assert hmac.compare_digest(headers[SIGNATURE_HEADER.lower()], signature(SECRET, body))
    kinds = [json.loads(b)["event"]["kind"] for _, b in rx.got]
    assert "model.promoted" in kinds and "gate.failed" in kinds
    promoted_bodies = [json.loads(b) for _, b in rx.got if json.loads(b)["trigger"] ==
                       "model.promoted"]
    assert promoted_bodies[0]["event"]["model_version"] == "v2"
