"""``/metrics`` for a regression champion: the realized MAE of the served values (in
target units), over the recent windows and per version, instead of an accuracy."""

from __future__ import annotations

import re

import numpy as np
import pytest
from fastapi.testclient import TestClient

from runtime.daemon import Daemon
from runtime.service.api import create_app
from runtime.store.served import realized
from tests.conftest import small_config

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _rows(n: int, seed: int) -> tuple[list[list[float]], list[float]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    return x.tolist(), (3 * x[:, 0] - x[:, 1] + 10).tolist()


def test_metrics_export_the_realized_mae(tmp_path: pytest.TempPathFactory) -> None:
    cfg = small_config(
        tmp_path, task="regression", schema={"features": ["a", "b"], "label": "y"},
        source={"kind": "http"}, api={"port": 0, "token_env": None},
        bootstrap={"rows": 300, "epochs": 5}, model={"kind": "mlp", "hidden": [16]},
        detectors=[{"kind": "adwin", "signal": "error"}],
        gate={"max_forgetting": 1.0},
    )
    daemon = Daemon(cfg)
    daemon.open()
    try:
        client = TestClient(create_app(daemon, cfg.api, TOKEN))  # type: ignore[arg-type]
        for seed, n in ((1, 300), (2, 200)):  # v1's rows, then 200 it serves and is told
            rows, labels = _rows(n, seed)
            r = client.post("/v1/ingest", json={"rows": rows, "labels": labels}, headers=AUTH)
            assert r.status_code == 200, r.text
            daemon.step()
        assert daemon.registry.champion() == "v1"
        text = client.get("/metrics").text
        want = realized(daemon.db, window=1000, metric="mae")
        assert want.rows == 200 and want.value is not None and want.value > 0
        got = re.search(r'^driftloop_realized_mae\{window="1000"\} (\S+)$', text, re.M)
        assert got is not None and float(got.group(1)) == pytest.approx(want.value)
        assert re.search(r'^driftloop_realized_mae_by_version\{version="v1"\} ', text, re.M)
        assert 'driftloop_realized_rows_by_version{version="v1"} 200.0' in text
        assert not re.search(r"^driftloop_realized_accuracy\{", text, re.M)
    finally:
        daemon.close()
