"""Hooks: signed webhooks to a real receiver, retries with backoff, final failures
recorded, command hooks, deliveries owed surviving a restart, the loop never waiting."""

from __future__ import annotations

import hmac
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from runtime.config import ConfigError, parse_config
from runtime.handoff.dispatcher import Dispatcher, HookError
from runtime.handoff.hooks import SIGNATURE_HEADER, signature
from runtime.handoff.outbox import Outbox
from runtime.handoff.settings import HookConfig
from runtime.store import events as ev
from runtime.store.db import Database
from runtime.store.events import EventLog
from tests.runtime.handoff.receiver import Receiver

SECRET = "hook-secret"


@pytest.fixture
def log(db: Database) -> EventLog:
    """The event log on SQLite and on PostgreSQL (tests/runtime/conftest.py's ``db``)."""
    return EventLog(db)


def _hook(**kw: Any) -> HookConfig:
    base: dict[str, Any] = {"on": ["model.promoted", "gate.failed", "candidate.awaiting_approval"],
                            "backoff_seconds": 0.05, "max_backoff_seconds": 0.2}
    return HookConfig(**{**base, **kw})


def _until(d: Dispatcher, ok: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d.step()
        if ok():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_webhook_is_signed_and_recorded_and_fires_on_chosen_events(log: EventLog) -> None:
    with Receiver() as rx:
        d = Dispatcher(log.db, log, [_hook(name="ops", url=rx.url, secret_env="S")],
                       env={"S": SECRET})
        d.outbox.start()
        log.append(ev.MODEL_PROMOTED, {"reason": "gate passed"}, model_version="v2")
        log.append(ev.GATE_PASSED, {"candidate": "v3", "next": "promote"}, model_version="v3")
        log.append(ev.GATE_PASSED, {"candidate": "v4", "next": "await approval"},
                   model_version="v4")
        log.append(ev.RETRAIN_FAILED, {"reason": "x"})  # not chosen
        _until(d, lambda: log.count(ev.HOOK_DELIVERED) == 2)
        d.stop()
    assert {b["trigger"] for b in rx.bodies()} == {"model.promoted", "candidate.awaiting_approval"}
    for headers, body in rx.got:
        assert hmac.compare_digest(headers[SIGNATURE_HEADER.lower()], signature(SECRET, body))
        parsed = json.loads(body)
        assert headers["x-driftloop-delivery"] == parsed["delivery"] == (
            f"ops:{parsed['event']['id']}")
    delivered = log.list(kinds=[ev.HOOK_DELIVERED])
    assert {(e.raw["hook"], e.raw["kind"], e.raw["status"]) for e in delivered} == {
        ("ops", "model.promoted", 204), ("ops", "gate.passed", 204)}
    assert {e.model_version for e in delivered} == {"v2", "v4"}


def test_retries_with_backoff_then_a_final_failure_is_recorded(log: EventLog) -> None:
    with Receiver(fail_first=2) as rx:
        d = Dispatcher(log.db, log, [_hook(name="flaky", url=rx.url, retries=3)])
        d.outbox.start()
        log.append(ev.MODEL_PROMOTED, {"reason": "r"}, model_version="v2")
        _until(d, lambda: log.count(ev.HOOK_DELIVERED) == 1)
        d.stop()
    assert rx.calls == 3
    assert log.list(kinds=[ev.HOOK_DELIVERED])[0].raw["attempts"] == 3

    dead = Receiver()  # bound, then closed: nothing listens on its port
    dead.server.server_close()
    d = Dispatcher(log.db, log, [_hook(name="gone", url=dead.url, retries=2, timeout_seconds=1)])
    d.outbox.start()
    log.append(ev.GATE_FAILED, {"candidate": "v3"}, model_version="v3")
    _until(d, lambda: log.count(ev.HOOK_FAILED) == 1)
    d.stop()
    failed = log.list(kinds=[ev.HOOK_FAILED])[0].raw
    assert failed["hook"] == "gone" and failed["attempts"] == 3
    assert failed["reason"].startswith(f"cannot reach {dead.url}: ")


def test_undelivered_hooks_survive_a_restart(log: EventLog) -> None:
    dead = Receiver()
    dead.server.server_close()
    with Receiver() as rx:
        first = Dispatcher(log.db, log, [_hook(name="h", url=rx.url)])
        first.outbox.start()
        log.append(ev.MODEL_PROMOTED, {"reason": "a"}, model_version="v2")
        first.outbox.enqueue()  # owed, never attempted: the daemon died here
        log.append(ev.MODEL_PROMOTED, {"reason": "b"}, model_version="v3")  # not even enqueued
        # a new process: another Dispatcher over the same database
        second = Dispatcher(log.db, log, [_hook(name="h", url=rx.url)])
        second.start()
        try:
            deadline = time.monotonic() + 20
            while log.count(ev.HOOK_DELIVERED) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            second.stop()
    assert sorted(b["event"]["model_version"] for b in rx.bodies()) == ["v2", "v3"]
    assert Outbox(log.db, log, [_hook(name="h", url=rx.url)]).counts() == {"delivered": 2}


def test_a_slow_receiver_never_holds_the_caller(log: EventLog) -> None:
    with Receiver(delay=1.5) as rx:
        d = Dispatcher(log.db, log, [_hook(url=rx.url)])
        d.outbox.start()
        log.append(ev.MODEL_PROMOTED, {"reason": "r"}, model_version="v2")
        began = time.monotonic()
        assert d.step() == 1
        assert time.monotonic() - began < 0.5
        assert d.step() == 0  # in flight: not started twice
        _until(d, lambda: log.count(ev.HOOK_DELIVERED) == 1)
        d.stop()


def test_command_hook_gets_the_event_on_stdin(tmp_path: Path, log: EventLog) -> None:
    out = tmp_path / "seen.json"
    script = f"import sys, pathlib; pathlib.Path({str(out)!r}).write_bytes(sys.stdin.buffer.read())"
    failing = "import sys; print('no route to pager', file=sys.stderr); sys.exit(3)"
    d = Dispatcher(log.db, log, [
        _hook(name="cmd", command=[sys.executable, "-c", script]),
        _hook(name="bad", command=[sys.executable, "-c", failing], retries=0),
    ])
    d.outbox.start()
    log.append(ev.GATE_FAILED, {"candidate": "v3"}, model_version="v3")
    _until(d, lambda: log.count(ev.HOOK_DELIVERED) == 1 and log.count(ev.HOOK_FAILED) == 1)
    d.stop()
    assert json.loads(out.read_text())["event"]["kind"] == "gate.failed"
    failed = log.list(kinds=[ev.HOOK_FAILED])[0].raw
    assert failed["reason"] == f"{sys.executable} exited 3: no route to pager"


def test_bad_hook_settings_are_one_line(tmp_path: Path, log: EventLog) -> None:
    base = {"state_dir": str(tmp_path), "schema": {"features": ["a"]},
            "source": {"kind": "http"}, "detectors": [{"kind": "adwin"}]}
    cases = {
        "ftp://example.org/x": "a webhook url must be http:// or https://, got 'ftp://example.org/x'",
        "hooks.example.org": "a webhook url must be http:// or https://",
    }
    for url, expected in cases.items():
        with pytest.raises(ConfigError) as info:
            parse_config({**base, "hooks": [{"on": ["model.promoted"], "url": url}]}, "c.yaml")
        assert expected in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"hooks\[0\]\.on\[0\]"):
        parse_config({**base, "hooks": [{"on": ["model.promotd"], "url": "http://x"}]}, "c.yaml")
    with pytest.raises(ConfigError, match="exactly one of url or command"):
        parse_config({**base, "hooks": [{"on": ["gate.failed"]}]}, "c.yaml")
    with pytest.raises(HookError, match=r"\$MISSING \(its secret_env\) is unset or empty"):
        Dispatcher(log.db, log, [_hook(url="http://127.0.0.1:9/x", secret_env="MISSING")], env={})


def test_hook_triggers_are_the_event_kinds() -> None:
    from typing import get_args

    from runtime.handoff.settings import AWAITING_APPROVAL, HookTrigger

    noisy = {ev.RETRAIN_PROGRESS, ev.HOOK_DELIVERED}
    assert set(get_args(HookTrigger)) == (ev.KINDS - noisy) | {AWAITING_APPROVAL}


def test_a_bare_on_key_in_yaml_is_read_as_on(tmp_path: Path) -> None:
    """YAML 1.1 turns ``on:`` into the boolean true; the hook settings take it back."""
    from runtime.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text(
        "state_dir: st\nschema: {features: [a]}\nsource: {kind: http}\n"
        "detectors: [{kind: adwin}]\n"
        "hooks:\n  - {on: [model.promoted, candidate.awaiting_approval], url: 'http://x/y'}\n"
    )
    assert load_config(path).hooks[0].on == ["model.promoted", "candidate.awaiting_approval"]


def test_stopping_while_the_thread_dispatches_delivers_each_event_once(
    tmp_path: Path,
) -> None:
    """stop()'s last pass and the thread's pass run one at a time: before that, both read
    the new delivery as due and it was sent twice (30 of 40 such stops)."""
    for i in range(10):
        (tmp_path / str(i)).mkdir()
        db = Database.for_state_dir(tmp_path / str(i), None)
        db.create_all()
        log = EventLog(db)
        with Receiver() as rx:
            d = Dispatcher(db, log, [_hook(name="once", url=rx.url, on=["labels.requested"])],
                           poll_seconds=0.001)
            d.start()
            log.append(ev.LABELS_REQUESTED, {"rows": [1]}, model_version="v1")
            d.wake()
            d.stop()
            assert len(rx.bodies()) == 1, i
        db.dispose()
