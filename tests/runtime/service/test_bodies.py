"""Bodies and headers the API cannot take: one 4xx with one line, the same on every
endpoint (an undecodable body is never a 500, nor a 400 on one endpoint and a 413 on
another)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from runtime.daemon import Daemon
from runtime.service.api import create_app
from tests.conftest import small_config

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
ENDPOINTS = ("/v1/ingest", "/v1/labels", "/v1/predict")
LIMIT = 20_000


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    cfg = small_config(
        tmp_path_factory.mktemp("bodies"),
        source={"kind": "http"},
        api={"port": 0, "token_env": None, "max_body_bytes": LIMIT},
    )
    daemon = Daemon(cfg)
    daemon.open()
    yield TestClient(create_app(daemon, cfg.api, TOKEN))  # type: ignore[arg-type]
    daemon.close()


def _answers(
    client: TestClient, body: bytes | Callable[[], Iterator[bytes]]
) -> list[tuple[int, str]]:
    out = []
    for path in ENDPOINTS:
        content = body if isinstance(body, bytes) else body()  # an iterator: sent chunked
        r = client.post(path, content=content, headers=AUTH)
        out.append((r.status_code, r.json()["error"]))
    return out


def _check(got: list[tuple[int, str]], status: int, words: str) -> None:
    assert {s for s, _ in got} == {status}, got
    for _, line in got:
        assert words in line and "\n" not in line, got


def test_json_nested_too_deep_is_422_everywhere(client: TestClient) -> None:
    deep = b'{"rows": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    _check(_answers(client, deep), 422, "nested too deep")


def test_a_number_of_5000_digits_is_422_everywhere(client: TestClient) -> None:
    big = b'{"rows": [[' + b"7" * 5000 + b']], "row_ids": ["a"], "labels": [1]}'
    _check(_answers(client, big), 422, "digits")


def test_an_oversize_chunked_body_is_413_everywhere(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"rows": ['
        for _ in range(LIMIT // 100 + 10):
            yield b"[" + b"1.0," * 24 + b"1.0],"
        yield b"[1.0]]}"

    _check(_answers(client, chunks), 413, "too large")


def test_header_size_and_count_limits_are_431(client: TestClient) -> None:
    big = client.get("/healthz", headers={"x-big": "a" * 1_000_000})
    assert big.status_code == 431 and "header" in big.json()["error"]
    many = client.get("/healthz", headers={f"x-h{i}": "1" for i in range(10_000)})
    assert many.status_code == 431 and "headers" in many.json()["error"]
    assert client.get("/healthz", headers={"x-fine": "1"}).status_code == 200


def test_the_real_server_answers_431_too(tmp_path: Path) -> None:
    import http.client

    from runtime.service.server import ApiServer

    cfg = small_config(tmp_path, source={"kind": "http"}, api={"port": 0, "token_env": None})
    daemon = Daemon(cfg)
    daemon.open()
    server = ApiServer(daemon, cfg.api, None)  # type: ignore[arg-type]
    server.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.putrequest("GET", "/healthz")
        for i in range(10_000):
            conn.putheader(f"x-h{i}", "1")
        conn.endheaders()
        assert conn.getresponse().status == 431
        conn.close()
    finally:
        server.stop()
        daemon.close()
