"""Categorical columns and class names through the HTTP API (issue 18): ``POST /v1/ingest``
and ``/v1/predict`` with text values, judged and encoded as a file's rows are."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from runtime.daemon import Daemon
from runtime.service.api import create_app
from runtime.store.db import quarantine
from tests.conftest import small_config

pytestmark = pytest.mark.slow  # a daemon bootstraps v1 over the API

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SCHEMA = {
    "features": [
        {"name": "plan", "type": "categorical", "missing": "impute"},
        {"name": "tenure", "type": "numeric", "missing": "refuse"},
    ],
    "label": "churned",
    "classes": ["no", "yes"],
}


def _rows(n: int, seed: int) -> tuple[list[list[Any]], list[str]]:
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "pro", "team"], n)
    tenure = rng.integers(1, 61, n)
    churn = (plan == "basic") & (tenure < 30)
    return ([[str(p), float(t)] for p, t in zip(plan, tenure, strict=True)],
            ["yes" if c else "no" for c in churn])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, TestClient]]:
    cfg = small_config(
        tmp_path_factory.mktemp("api_cat"),
        schema=SCHEMA,
        source={"kind": "http"},
        api={"port": 0, "token_env": None},
        bootstrap={"rows": 300, "epochs": 3},
        model={"kind": "mlp", "hidden": [16]},
    )
    daemon = Daemon(cfg)
    daemon.open()
    client = TestClient(create_app(daemon, cfg.api, TOKEN))  # type: ignore[arg-type]
    rows, labels = _rows(400, seed=1)
    r = client.post("/v1/ingest", json={"rows": rows, "labels": labels}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 400
    daemon.step()  # drains the inbox: 400 labelled rows → bootstrap v1
    assert daemon.registry.champion() == "v1"
    yield daemon, client
    daemon.close()


def test_ingest_takes_categories_and_class_names_as_text(
    served: tuple[Daemon, TestClient],
) -> None:
    daemon, client = served
    rows = [["enterprise", 12.0], ["pro", None], ["basic", 3.0]]
    r = client.post("/v1/ingest", json={"rows": rows, "labels": ["yes", None, "yes"]},
                    headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (2, 1)  # the unseen plan is kept
    with daemon.db.connect() as conn:
        reasons = [q[0] for q in conn.execute(select(quarantine.c.reason))]
    assert any("tenure" in q for q in reasons) and not any("plan" in q for q in reasons)


def test_predict_takes_categories_as_text(served: tuple[Daemon, TestClient]) -> None:
    _, client = served
    r = client.post("/v1/predict", json={"rows": [["basic", 5.0], ["enterprise", 40.0]]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["classes"] == ["no", "yes"]
    assert set(body["predictions"]) <= {"no", "yes"} and len(body["predictions"]) == 2
