"""Benchmark of the handoff (not a test): export time per format, and promotion → a
separate serving process answering with the new version.

- Export: ``export_version`` of one version of the demo's MLP (9 features, [64, 64]) and
  of the text model (all-MiniLM-L6-v2, 6 layers, 32 tokens), each format alone into a
  fresh directory, checked on the version's golden rows as every export is; ``seconds``
  includes loading the version (building the model), ``format_seconds`` is the format's
  own export and check.
- Promotion → serving: a registry with the demo's MLP; the daemon's export publisher
  (``export: {formats: [onnx]}``, polling every 0.2 s) runs in this process, a serving
  process that imports only the client module (``ChampionWatcher``, polling every 0.2 s)
  answers predictions over HTTP. For each of N promotions (a saved candidate promoted
  through the registry, as the gatekeeper does), the time from the promotion's commit to
  the first answer from the new version. Retraining is not part of it.

Usage: python bench/handoff.py [--quick] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runtime.config import DriftloopConfig, parse_config  # noqa: E402
from runtime.handoff import client as client_module  # noqa: E402
from runtime.handoff.export import FORMATS, export_version  # noqa: E402
from runtime.handoff.publisher import Publisher  # noqa: E402
from runtime.store.db import Database  # noqa: E402
from runtime.store.events import EventLog  # noqa: E402
from runtime.store.unit import new_buffer, new_model, save_unit  # noqa: E402
from runtime.store.versions import Registry  # noqa: E402
from strategies.models import fit_normalization  # noqa: E402

SERVE = """
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import driftloop_client
w = driftloop_client.ChampionWatcher(sys.argv[1], format="onnx", poll_seconds=0.2).start()
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        rows = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["rows"]
        try:
            version, _ = w.predict(rows); body = json.dumps({"model": version}).encode()
        except driftloop_client.LoadError:
            body = b'{"model": null}'
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"""


def _state(tmp: Path, model: dict[str, Any], features: list[str], export: Path | None = None
           ) -> tuple[DriftloopConfig, Registry]:
    (tmp / "inbox").mkdir(parents=True, exist_ok=True)
    cfg = parse_config({
        "state_dir": str(tmp / "state"), "schema": {"features": features, "classes": [0, 1]},
        "source": {"kind": "directory", "path": str(tmp / "inbox")}, "model": model,
        "detectors": [{"kind": "adwin"}],
        **({"export": {"dir": str(export), "formats": ["onnx"]}} if export else {}),
    }, origin="bench")
    cfg.state_dir.mkdir(parents=True)
    db = Database.for_state_dir(cfg.state_dir, None)
    db.create_all()
    events = EventLog(db)
    return cfg, Registry(db, cfg.state_dir / "models", events)


def _version(cfg: DriftloopConfig, registry: Registry, x: np.ndarray, promote: bool) -> str:
    version = registry.next_version()
    y = np.zeros(len(x), dtype=np.int64)
    model = new_model(cfg, seed=len(registry.list()))
    fit_normalization(model, torch.as_tensor(x, dtype=torch.float32))  # as v1 is trained
    save_unit(registry, version, model=model,
              buffer=new_buffer(cfg), reference=x, golden=(x, y),
              meta={"golden_index": [version]}, parent=registry.champion())
    if promote:
        registry.promote(version, {"reason": "bench"})
    return version


def _demo_rows(n: int) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, 9)) * 1000


def _text_rows(n: int) -> np.ndarray:
    """Token-id rows of the text demo's shop tickets (configs/data/text/task.csv)."""
    import pandas as pd

    frame = pd.read_csv(ROOT / "configs" / "data" / "text" / "task.csv", nrows=n)
    return frame[[f"t{i:02d}" for i in range(32)]].to_numpy(dtype=np.float64)


def bench_exports(tmp: Path, quick: bool) -> list[dict[str, Any]]:
    cases = [("demo", {"kind": "mlp", "hidden": [64, 64]}, [f"f{i}" for i in range(9)],
              _demo_rows(400))]
    if not quick:
        from strategies.text import token_columns

        cases.append(("text", {"kind": "text"}, token_columns(32), _text_rows(160)))
    out = []
    for name, model, features, x in cases:
        cfg, registry = _state(tmp / name, model, features)
        version = _version(cfg, registry, x, promote=True)
        for fmt in FORMATS:
            began = time.perf_counter()
            done = export_version(cfg, registry, version, [fmt], tmp / name / f"out-{fmt}")
            seconds = time.perf_counter() - began
            info = done.manifest["formats"][fmt]
            size = done.manifest["files"][info["file"]]["bytes"]
            out.append({"model": name, "format": fmt, "seconds": round(seconds, 3),
                        "format_seconds": info["seconds"], "bytes": size,
                        "max_abs_diff": info["max_abs_diff"], "rows": len(x)})
            print(f"export  {name:<5} {fmt:<12} {seconds:7.2f} s (format {info['seconds']:.2f} s)"
                  f"  {size / 1e6:8.2f} MB  "
                  f"max |diff| {info['max_abs_diff']:.1e}", flush=True)
        registry.db.dispose()
    return out


def bench_promotions(tmp: Path, n: int) -> dict[str, Any]:
    exports = tmp / "promo-exports"
    cfg, registry = _state(tmp / "promo", {"kind": "mlp", "hidden": [64, 64]},
                           [f"f{i}" for i in range(9)], exports)
    x = _demo_rows(200)
    _version(cfg, registry, x, promote=True)
    publisher = Publisher(cfg, registry, poll_seconds=0.2)
    publisher.start()
    serving = tmp / "serving"
    serving.mkdir()
    shutil.copy(client_module.__file__, serving / "driftloop_client.py")
    (serving / "serve.py").write_text(textwrap.dedent(SERVE))
    proc = subprocess.Popen([sys.executable, "serve.py", str(exports)], cwd=serving,
                            stdout=subprocess.PIPE, text=True,
                            env={"PATH": os.environ.get("PATH", "")})
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    body = json.dumps({"rows": x[:1].tolist()}).encode()

    def answer() -> str | None:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=body)
        with urllib.request.urlopen(req, timeout=5) as r:
            got: str | None = json.loads(r.read())["model"]
            return got

    def wait_for(version: str) -> float:
        began = time.perf_counter()
        while answer() != version:
            if time.perf_counter() - began > 120:
                raise RuntimeError(f"serving never answered {version}")
            time.sleep(0.01)
        return time.perf_counter() - began

    lags = []
    try:
        wait_for("v1")
        for _ in range(n):
            version = _version(cfg, registry, x, promote=False)
            began = time.perf_counter()
            registry.promote(version, {"reason": "bench"})
            wait_for(version)
            lags.append(time.perf_counter() - began)
            print(f"promote {version}: serving answered it after {lags[-1]:.2f} s", flush=True)
    finally:
        proc.terminate()
        proc.wait(10)
        publisher.stop()
        registry.db.dispose()
    return {"promotions": n, "p50_seconds": round(statistics.median(lags), 3),
            "max_seconds": round(max(lags), 3), "seconds": [round(s, 3) for s in lags]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="demo model only, 3 promotions")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        exports = bench_exports(Path(tmp), args.quick)
        promos = bench_promotions(Path(tmp), 3 if args.quick else 10)
    print(f"promotion -> serving answers the new version: p50 {promos['p50_seconds']:.2f} s, "
          f"max {promos['max_seconds']:.2f} s over {promos['promotions']} promotions")
    result = {"quick": args.quick, "machine": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "exports": exports, "promotion_to_serving": promos}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
