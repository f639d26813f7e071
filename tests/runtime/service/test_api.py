"""The HTTP API through FastAPI's test client, on a daemon bootstrapped over the API.

One daemon (module scope) is bootstrapped by rows sent to ``POST /v1/ingest``; the
tests then exercise every endpoint, the auth rules, the limits and the error shape, and
a property-based run (schemathesis) over the served OpenAPI schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from runtime.daemon import Daemon
from runtime.intake.demo_stream import segment_rows
from runtime.intake.settings import Segment
from runtime.service.api import create_app
from runtime.store import events as ev
from tests.conftest import small_config

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def synthetic(
    n: int, seed: int, age: tuple[float, float] = (20, 40)
) -> tuple[list[Any], list[int]]:
    got = list(segment_rows(Segment(rows=n, function=1, where={"age": age}), seed=seed))
    return [r[0] for r in got], [int(r[1]) for r in got]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, TestClient]]:
    tmp = tmp_path_factory.mktemp("api")
    cfg = small_config(
        tmp,
        source={"kind": "http"},
        api={"port": 0, "token_env": None, "max_body_bytes": 2_000_000, "max_batch_rows": 5000},
        bootstrap={"rows": 400, "epochs": 3},
        model={"kind": "mlp", "hidden": [16]},
    )
    daemon = Daemon(cfg)
    daemon.open()
    client = TestClient(create_app(daemon, cfg.api, TOKEN))  # type: ignore[arg-type]
    rows, labels = synthetic(500, seed=1)
    r = client.post("/v1/ingest", json={"rows": rows, "labels": labels}, headers=AUTH)
    assert r.status_code == 200, r.text
    daemon.step()  # drains the inbox: 500 labelled rows → bootstrap v1
    assert daemon.registry.champion() == "v1"
    yield daemon, client
    daemon.close()


def test_ingest_is_stored_monitored_and_reported(served: tuple[Daemon, TestClient]) -> None:
    daemon, client = served
    before = daemon.rows_seen
    rows, labels = synthetic(50, seed=2)
    r = client.post("/v1/ingest", json={"rows": rows, "labels": labels}, headers=AUTH)
    body = r.json()
    assert r.status_code == 200
    assert body["accepted"] == 50 and body["rejected"] == 0 and body["errors"] == []
    assert body["last_seq"] - body["first_seq"] == 49
    assert daemon.inbox.rows == 50  # stored; waiting for the detectors
    daemon.step()
    assert daemon.rows_seen == before + 50 and daemon.inbox.rows == 0
    st = client.get("/v1/status").json()
    assert st["champion"] == "v1" and st["leader"] is True
    assert set(st["detectors"]) == {d.name for d in daemon.detectors}
    assert st["schema"]["features"] == list(daemon.cfg.schema.features)
    by_version = st["realized_accuracy"]["by_version"]
    assert list(by_version) == ["v1"] and by_version["v1"]["rows"] >= 50  # what v1 served
    est = st["estimated_accuracy"]  # v1's label-free estimate over the rows it monitored
    assert est["version"] == "v1" and est["rows"] >= 50 and est["low"] <= est["value"] <= 1
    assert 0.0 < est["macro_f1"] <= 1.0  # from the class probabilities of the same rows


def test_idempotency_key_and_row_ids_make_retries_harmless(
    served: tuple[Daemon, TestClient],
) -> None:
    _, client = served
    rows, labels = synthetic(20, seed=3)
    body = {"rows": rows, "labels": labels}
    headers = {**AUTH, "Idempotency-Key": "batch-42"}
    first = client.post("/v1/ingest", json=body, headers=headers).json()
    again = client.post("/v1/ingest", json=body, headers=headers).json()
    assert first["accepted"] == 20 and not first["replayed"]
    assert again["accepted"] == 0 and again["duplicates"] == 20 and again["replayed"]
    ids = [f"rid-{i}" for i in range(5)]
    a = client.post("/v1/ingest", json={"rows": rows[:5], "row_ids": ids}, headers=AUTH).json()
    b = client.post("/v1/ingest", json={"rows": rows[:5], "row_ids": ids}, headers=AUTH).json()
    assert (a["accepted"], b["accepted"], b["duplicates"]) == (5, 0, 5)


def test_bad_rows_are_quarantined_with_reasons_not_5xx(served: tuple[Daemon, TestClient]) -> None:
    _, client = served
    rows, labels = synthetic(4, seed=4)
    rows[1] = rows[1][:3]  # ragged
    rows[2] = [None, *rows[2][1:]]  # missing value
    labels[3] = 7  # not a class
    r = client.post("/v1/ingest", json={"rows": rows, "labels": labels}, headers=AUTH)
    body = r.json()
    assert r.status_code == 200
    assert body["accepted"] == 1 and body["rejected"] == 3
    reasons = {e["index"]: e["reason"] for e in body["errors"]}
    assert "expected 9 values" in reasons[1]
    assert "missing" in reasons[2]
    assert "unknown label" in reasons[3]


def test_late_labels_join_by_row_id(served: tuple[Daemon, TestClient]) -> None:
    daemon, client = served
    rows, labels = synthetic(6, seed=5)
    ids = [f"late-{i}" for i in range(6)]
    client.post("/v1/ingest", json={"rows": rows, "row_ids": ids}, headers=AUTH)
    r = client.post(
        "/v1/labels", json={"row_ids": [*ids, "never-seen"], "labels": [*labels, 0]}, headers=AUTH
    )
    body = r.json()
    assert r.status_code == 200, body
    assert body["joined"] == 6 and body["rejected"] == 1
    assert "unknown row id" in body["errors"][0]["reason"]
    again = client.post("/v1/labels", json={"row_ids": ids, "labels": labels}, headers=AUTH)
    assert again.json()["already_labelled"] == 6
    queued = daemon.inbox.drain()  # rows, then their labels, go to the detectors
    assert queued[-2].count == 6 and len(queued[-1].labels_joined) == 6


def test_predict_uses_the_champion(served: tuple[Daemon, TestClient]) -> None:
    daemon, client = served
    rows, _ = synthetic(5, seed=6)
    body = client.post("/v1/predict", json={"rows": rows}).json()
    assert body["model_version"] == "v1"
    assert len(body["predictions"]) == 5 and set(body["predictions"]) <= {0, 1}
    assert all(abs(sum(p) - 1) < 1e-4 for p in body["probabilities"])
    names = list(reversed(daemon.cfg.schema.features))
    flipped = [list(reversed(r)) for r in rows]
    same = client.post("/v1/predict", json={"rows": flipped, "features": names}).json()
    assert same["predictions"] == body["predictions"]
    bad = client.post("/v1/predict", json={"rows": [[1.0, 2.0]]})
    assert bad.status_code == 422 and "expected 9 values" in bad.json()["error"]


def test_auth_reads_are_open_writes_need_the_token(served: tuple[Daemon, TestClient]) -> None:
    _, client = served
    body = {"rows": [[0.0] * 9]}
    missing = client.post("/v1/ingest", json=body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "Bearer" in missing.json()["error"]
    wrong = client.post("/v1/ingest", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403 and wrong.json() == {"error": "the bearer token is not valid"}
    for path in ("/v1/status", "/v1/events", "/v1/models", "/healthz", "/readyz", "/metrics"):
        assert client.get(path).status_code == 200, path
    for path in ("/v1/retrain", "/v1/models/v1/promote", "/v1/models/v1/rollback"):
        assert client.post(path).status_code == 401, path


def test_errors_are_json_with_a_clear_line(served: tuple[Daemon, TestClient]) -> None:
    _, client = served
    broken = client.post(
        "/v1/ingest", content=b"{not json", headers={**AUTH, "content-type": "application/json"}
    )
    assert broken.status_code == 422 and broken.json()["error"].startswith("invalid request")
    unknown = client.post("/v1/ingest", json={"rows": [[1.0] * 9], "extra": 1}, headers=AUTH)
    assert unknown.status_code == 422 and "extra" in unknown.json()["error"]
    huge = client.post("/v1/ingest", content=b"x" * 2_000_001, headers=AUTH)
    assert huge.status_code == 413 and "too large" in huge.json()["error"]
    many = client.post("/v1/ingest", json={"rows": [[1.0] * 9] * 5001}, headers=AUTH)
    assert many.status_code == 413 and "too many rows" in many.json()["error"]
    nowhere = client.get("/v2/nothing")
    assert nowhere.status_code == 404 and nowhere.json() == {"error": "no such endpoint"}
    ids = client.post("/v1/ingest", json={"rows": [[1.0] * 9], "row_ids": ["a\x00b"]}, headers=AUTH)
    assert ids.status_code == 422


def test_events_filter_and_page(served: tuple[Daemon, TestClient]) -> None:
    _, client = served
    everything = client.get("/v1/events", params={"limit": 1000}).json()["events"]
    assert [e["id"] for e in everything] == sorted(e["id"] for e in everything)
    seen: list[int] = []
    after = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if after is not None:
            params["after_id"] = after
        page = client.get("/v1/events", params=params).json()
        seen += [e["id"] for e in page["events"]]
        after = page["next_after_id"]
        if after is None:
            break
    assert seen == [e["id"] for e in everything]
    promoted = client.get("/v1/events", params={"kind": "model.", "model": "v1"}).json()
    assert [e["kind"] for e in promoted["events"]] == [ev.MODEL_PROMOTED]
    assert client.get("/v1/events", params={"since": "2999-01-01"}).json()["events"] == []
    assert client.get("/v1/events", params={"until": "2000-01-01"}).json()["events"] == []
    bad = client.get("/v1/events", params={"kind": "nonsense"})
    assert bad.status_code == 422 and "unknown event kind" in bad.json()["error"]
    assert client.get("/v1/events", params={"since": "yesterday"}).status_code == 422


def test_model_actions_refuse_clearly(served: tuple[Daemon, TestClient]) -> None:
    _, client = served
    models = client.get("/v1/models").json()
    assert models["champion"] == "v1" and models["models"][0]["status"] == "champion"
    assert client.get("/v1/models/v1").json()["version"] == "v1"
    assert client.post("/v1/models/v9/promote", headers=AUTH).status_code == 404
    again = client.post("/v1/models/v1/promote", headers=AUTH)
    assert again.status_code == 409 and "not 'candidate'" in again.json()["error"]
    back = client.post("/v1/models/v1/rollback", headers=AUTH)
    assert back.status_code == 409 and "already the champion" in back.json()["error"]
    for verb in ("approve", "reject"):
        r = client.post(f"/v1/models/v1/{verb}", json={"reason": "looks fine"}, headers=AUTH)
        assert r.status_code in (200, 409), r.text
        assert "error" in r.json() or "champion" in r.json()


def test_manual_retrain_is_one_request_per_key(served: tuple[Daemon, TestClient]) -> None:
    daemon, client = served
    headers = {**AUTH, "Idempotency-Key": "ops-1"}
    body = {"reason": "new labels", "since_seq": 1}
    first = client.post("/v1/retrain", json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = client.post("/v1/retrain", json={"since_seq": 1}, headers=headers)
    assert again.status_code == 200
    assert again.json()["trigger_id"] == first.json()["trigger_id"] == "manual-ops-1"
    assert not again.json()["created"]
    requested = daemon.events.list(kinds=[ev.RETRAIN_REQUESTED])
    assert [e.raw["trigger_id"] for e in requested] == ["manual-ops-1"]
    assert requested[0].raw["reason"] == "new labels"
    with daemon.db.begin() as conn:  # keep the shared daemon from training in later tests
        from sqlalchemy import update

        from runtime.store.db import retrain_requests

        conn.execute(update(retrain_requests).values(status="finished"))


def test_health_readiness_metrics(served: tuple[Daemon, TestClient]) -> None:
    _, client = served
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["ready"] and ready["champion"] == "v1" and ready["leader"]
    text = client.get("/metrics").text
    for name in (
        "driftloop_rows_ingested_total",
        "driftloop_rows_rejected_total",
        "driftloop_gate_outcomes_total",
        "driftloop_retrain_duration_seconds_count",
        'driftloop_champion_info{version="v1"} 1.0',
        "driftloop_champion_version 1.0",
        "driftloop_detector_statistic",
        "driftloop_http_requests_total",
        'driftloop_realized_accuracy{window="1000"}',
        'driftloop_realized_accuracy_by_version{version="v1"}',
        'driftloop_estimated_accuracy{version="v1"}',
        'driftloop_estimated_accuracy_low{version="v1"}',
        'driftloop_estimated_macro_f1{version="v1"}',
        'driftloop_realized_rows_by_version{version="v1"}',
    ):
        assert name in text, name


# -- property-based: the served OpenAPI schema ----------------------------------------------
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_openapi_no_5xx_and_schema_valid_responses(served: tuple[Daemon, TestClient]) -> None:
    """schemathesis generates requests for every operation from the served schema; every
    response must be a documented status, never a 5xx, and match its schema.
    (Driven through hypothesis directly: schemathesis' pytest plugin and pytest 9 disagree.)"""
    _, client = served
    api = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case: Any) -> None:
            case.call_and_validate(headers=AUTH, checks=CHECKS)

        run()


def test_served_schema_documents_errors(served: tuple[Daemon, TestClient], tmp_path: Path) -> None:
    _, client = served
    spec = client.get("/openapi.json").json()
    ingest = spec["paths"]["/v1/ingest"]["post"]
    assert {"401", "413", "422"} <= set(ingest["responses"])
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_ingest_body_is_documented_and_judged_as_pydantic_would(
    served: tuple[Daemon, TestClient],
) -> None:
    """The endpoint decodes its body with msgspec; what msgspec refuses pydantic decides."""
    _, client = served
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/ingest"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert body["required"] and schema["required"] == ["rows"]
    assert {"rows", "labels", "row_ids", "features", "timestamps"} == set(schema["properties"])
    rows, labels = synthetic(2, seed=9)
    as_text = [[str(v) for v in rows[0]], rows[1]]  # lax: numbers as strings pass
    ok = client.post("/v1/ingest", json={"rows": as_text, "labels": labels}, headers=AUTH)
    assert ok.status_code == 200 and ok.json()["accepted"] == 2, ok.text
    plain = {**AUTH, "content-type": "text/plain"}
    wrong_type = client.post("/v1/ingest", content=b'{"rows": [[1]]}', headers=plain)
    assert wrong_type.status_code == 422
    empty = client.post("/v1/ingest", content=b"", headers=AUTH)
    assert empty.status_code == 422 and "Field required" in empty.json()["error"]
    # a number that is no int32 passes the body (a regression target) and is no class here
    big = client.post("/v1/ingest", json={"rows": rows, "labels": [0, 2**40]}, headers=AUTH)
    assert big.status_code == 200 and big.json()["rejected"] == 1, big.text
    assert [e["index"] for e in big.json()["errors"]] == [1], big.text
    nan = client.post("/v1/ingest", content=b'{"rows": [[1]], "labels": [NaN]}', headers=AUTH)
    assert nan.status_code == 422


def test_ingest_body_not_utf8_is_a_422_not_a_500(served: tuple[Daemon, TestClient]) -> None:
    _, client = served
    headers = {**AUTH, "content-type": "application/json"}
    r = client.post("/v1/ingest", content=b'{"rows": [[1]], "row_ids": ["\xff"]}', headers=headers)
    assert r.status_code == 422, r.text
    assert r.json()["error"].startswith("invalid request: body: not UTF-8")
    r = client.post("/v1/ingest", content=b"\xff\xfe{}", headers=headers)  # a UTF-16 BOM
    assert r.status_code == 422 and r.json()["error"].startswith("invalid request: body"), r.text


def _manual_client(tmp_path: Path) -> tuple[Any, TestClient]:
    """An API over a registry in manual gate mode: v1 champion, v2 and v3 await approval."""
    from runtime.config import ApiConfig
    from runtime.intake.ingest import Ingestor
    from tests.runtime.promotion.test_promotion import manual_world

    w = manual_world(tmp_path)

    class Host:
        cfg, db, events, registry, unit = w.cfg, w.db, w.events, w.registry, None
        ingestor = Ingestor(w.db, w.cfg.schema, w.events)

        def submit(self, acc: Any) -> None: ...

        def runtime_status(self) -> dict[str, Any]:
            return {}

    app = create_app(Host(), ApiConfig(port=0, token_env=None), TOKEN)  # type: ignore[arg-type]
    return w, TestClient(app)


def test_approve_and_reject_settle_a_candidate_awaiting_approval(tmp_path: Path) -> None:
    """In manual gate mode the API's approve/reject do what ``driftloop approve/reject`` do
    (they used to answer 409 'not in manual mode' for every candidate)."""
    w, client = _manual_client(tmp_path)
    no = client.post("/v1/models/v3/reject", json={"reason": "bad feed"}, headers=AUTH)
    assert no.status_code == 200, no.text
    assert no.json()["event"]["kind"] == ev.GATE_FAILED and "bad feed" in no.text
    assert w.registry.get("v3").status == "refused"
    yes = client.post("/v1/models/v2/approve", headers=AUTH)
    assert yes.status_code == 200, yes.text
    assert yes.json()["champion"] == "v2" and yes.json()["event"]["kind"] == ev.MODEL_PROMOTED
    again = client.post("/v1/models/v2/approve", headers=AUTH)
    assert again.status_code == 409 and "not awaiting approval" in again.json()["error"]


def test_refusal_messages_keep_their_closing_quote(tmp_path: Path) -> None:
    w, client = _manual_client(tmp_path)
    w.registry.promote("v2", {"reason": "test"})
    w.registry.set_status("v1", "refused")
    r = client.post("/v1/models/v1/rollback", headers=AUTH)
    assert r.status_code == 409
    assert r.json()["error"] == "cannot roll back to v1: it was marked 'refused'"
