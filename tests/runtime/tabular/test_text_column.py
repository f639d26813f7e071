"""A ``type: text`` column end to end: rows carry the sentence; one daemon burst over a
finite directory source bootstraps the text model, monitors, detects the drift to Spanish,
retrains and gates; ``/v1/predict`` takes the sentence; the export carries the tokenizer;
a version whose saved tokenizer was changed is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from runtime.config import DriftloopConfig, parse_config
from runtime.daemon import Daemon
from runtime.handoff.export import export_version
from runtime.service.api import create_app
from runtime.store.db import quarantine
from runtime.store.unit import load_unit
from runtime.store.versions import IntegrityError
from strategies.text_tokenizer import SentenceTokenizer

pytestmark = pytest.mark.slow  # the MiniLM encoder trains twice on CPU (about a minute)

DATA = Path(__file__).resolve().parents[3] / "configs" / "data" / "text" / "sentences"


def _config(tmp: Path) -> DriftloopConfig:
    (tmp / "stream").mkdir()
    pd.read_csv(DATA / "task.csv").head(160).to_csv(tmp / "task.csv", index=False)
    stream = pd.read_csv(DATA / "stream" / "part-001.csv")
    rows = pd.concat([stream.iloc[:150], stream.iloc[300:600]])  # shop, then Spanish
    # no label: an id and a label alone would be a late label for an earlier row
    blank = pd.DataFrame({"row_id": ["blank-1"], "text": [""], "label": [None]})
    pd.concat([rows.iloc[:50], blank, rows.iloc[50:]]).to_csv(
        tmp / "stream" / "part-001.csv", index=False)
    return parse_config({
        "state_dir": str(tmp / "state"), "seed": 3,
        "schema": {"features": [{"name": "text", "type": "text", "max_length": 24}],
                   "label": "label", "classes": [0, 1, 2, 3]},
        "source": {"kind": "directory", "path": str(tmp / "stream")},
        "model": {"kind": "text", "encoder_layers": 1, "dropout": 0.0},
        "bootstrap": {"data": str(tmp / "task.csv"), "rows": 160, "epochs": 3, "lr": 0.003,
                      "batch_size": 16, "min_accuracy": 0.5},
        "detectors": [{"kind": "adwin", "signal": "error", "delta": 0.01}],
        "policy": {"warmup_rows": 20, "min_samples": 60, "cooldown_rows": 1000},
        "retrain": {"strategy": {"kind": "replay", "lr": 0.003, "batch_size": 16, "mix": 0.3},
                    "buffer": {"kind": "reservoir", "capacity": 200},
                    "budget": {"epochs": 2}, "reference_size": 100},
        "api": {"port": 0, "token_env": None},
    }, origin="test")


@pytest.fixture(scope="module")
def burst(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    cfg = _config(tmp_path_factory.mktemp("text_column"))
    daemon = Daemon(cfg)
    daemon.run(until_drained=True)
    daemon.open()
    yield daemon
    daemon.close()


def test_a_burst_bootstraps_detects_retrains_and_gates_on_sentences(burst: Daemon) -> None:
    kinds = [e.kind for e in burst.events.list(limit=100000)]
    assert kinds.count("model.promoted") >= 1  # v1
    assert "drift.detected" in kinds
    after = kinds[kinds.index("drift.detected"):]
    assert "retrain.finished" in after
    assert "gate.passed" in after or "gate.failed" in after
    with burst.db.connect() as conn:
        reasons = [r[0] for r in conn.execute(select(quarantine.c.reason))]
    assert reasons == ["feature 'text' is missing or blank (missing: refuse)"]


def test_each_version_saves_the_tokenizer_and_refuses_another(burst: Daemon) -> None:
    cfg, registry = burst.cfg, burst.registry
    for v in registry.list():
        unit = load_unit(registry, cfg, v.version)
        assert unit.tokenizers["text"] == SentenceTokenizer.packaged(24)
        assert v.meta["tokenizer"]["text"]["lowercase"] is True
    longer = cfg.schema.model_copy(update={"columns": {"text": cfg.schema.columns["text"]
                                                       .model_copy(update={"max_length": 30})}})
    changed = cfg.model_copy(update={"schema_": longer})
    with pytest.raises(IntegrityError, match="not the one ingest uses"):
        load_unit(registry, changed, "v1")


def test_predict_takes_the_sentence(burst: Daemon) -> None:
    client = TestClient(create_app(burst, burst.cfg.api, None))  # type: ignore[arg-type]
    r = client.post("/v1/predict", json={"rows": [["I was charged twice for my order"],
                                                  ["my parcel never arrived"]]})
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 2
    named = client.post("/v1/predict", json={"features": ["text"],
                                             "rows": [["the app crashes at checkout"]]})
    assert named.status_code == 200, named.text
    blank = client.post("/v1/predict", json={"rows": [[""]]})
    assert blank.status_code == 422 and "text" in blank.text


def test_http_ingest_takes_the_sentence(burst: Daemon) -> None:
    client = TestClient(create_app(burst, burst.cfg.api, "t0ken"))  # type: ignore[arg-type]
    r = client.post("/v1/ingest", json={"rows": [["where is my parcel"], [""]],
                                        "labels": [1, None], "row_ids": ["h1", "h2"]},
                    headers={"Authorization": "Bearer t0ken"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (1, 1), body
    assert "text" in body["errors"][0]["reason"]


def test_export_carries_the_tokenizer(burst: Daemon, tmp_path: Path) -> None:
    champion = burst.registry.champion()
    assert champion is not None
    out = export_version(burst.cfg, burst.registry, champion, ["safetensors"], tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    text = manifest["input"]["text_columns"]["text"]
    assert text["max_length"] == 24 and text["file"] in manifest["files"]
    assert out.manifest["input"]["features"][0] == "text[00]"
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str((tmp_path / text["file"]).read_text())
    assert tok.encode("my parcel never arrived").ids[0] == 101  # [CLS]
