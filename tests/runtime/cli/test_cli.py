"""The CLI, over the state of one daemon burst (copied where a test changes it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runtime.cli.main import COMMANDS, main
from runtime.config import DriftloopConfig
from runtime.daemon import Daemon
from runtime.store import events as ev
from runtime.store.db import Database
from runtime.store.events import EventLog
from runtime.store.versions import Registry

ROOT = Path(__file__).resolve().parents[3]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in COMMANDS:
        with pytest.raises(SystemExit) as info:
            main([cmd, "--help"])
        assert info.value.code == 0
        assert f"usage: driftloop {cmd}" in capsys.readouterr().out
    # the installed entry point, as a user runs it
    exe = Path(sys.executable).with_name("driftloop")
    done = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "usage: driftloop" in done.stdout
    for cmd in COMMANDS:
        assert cmd in done.stdout


def test_events_json_is_one_object_a_line_in_order(burst: Any, capsys: Any) -> None:
    cfg, events = burst
    code, out, _ = _run(capsys, "events", "--state-dir", str(cfg.state_dir), "--json")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == len(events)
    assert list(lines[0]) == ["id", "ts", "kind", "model_version", "payload"]
    assert [x["id"] for x in lines] == sorted(x["id"] for x in lines)
    assert all(x["ts"].endswith("Z") for x in lines)


def test_events_filters_and_readable_table(burst: Any, capsys: Any) -> None:
    cfg, _ = burst
    state = ["--state-dir", str(cfg.state_dir)]
    _, out, _ = _run(capsys, "events", *state, "--kind", "gate.failed", "--json")
    got = [json.loads(line) for line in out.splitlines()]
    assert got and {g["kind"] for g in got} == {"gate.failed"}
    _, out, _ = _run(capsys, "events", *state, "--kind", "gate.", "--model", "v2", "--json")
    assert {json.loads(line)["kind"] for line in out.splitlines()} == {"gate.passed"}
    _, table, _ = _run(capsys, "events", *state)
    assert "drift.detected" in table and "gate.failed" in table and "refuse" in table
    code, _, err = _run(capsys, "events", *state, "--kind", "gate.maybe")
    assert code == 2 and "unknown event kind 'gate.maybe'" in err and err.count("\n") == 1
    _, out, _ = _run(capsys, "events", *state, "--since", "2999-01-01", "--json")
    assert out == ""


def test_status_and_models(burst: Any, capsys: Any) -> None:
    cfg, _ = burst
    state = ["--state-dir", str(cfg.state_dir)]
    code, out, _ = _run(capsys, "status", *state, "--json")
    st = json.loads(out)
    assert code == 0 and st["champion"] == "v2" and st["daemon_running"] is False
    assert st["rows"] == sum(s.rows for s in cfg.source.segments)
    ra = st["realized_accuracy"]
    assert ra["metric"] == "accuracy" and [r["window"] for r in ra["recent"]] == [100, 1000, 10000]
    assert list(ra["by_version"]) == ["v1", "v2"]  # v3 was refused: it never served
    assert all(0.0 <= r["value"] <= 1.0 for r in [*ra["recent"], *ra["by_version"].values()])
    _, text, _ = _run(capsys, "status", *state)
    line = next(x for x in text.splitlines() if x.startswith("realized:"))
    assert f"{ra['recent'][0]['value']:.3f} last 100" in line
    assert f"v2 {ra['by_version']['v2']['value']:.3f}" in text
    est = st["estimated_accuracy"]  # the champion's label-free estimate, and versus realized
    assert est["version"] == "v2" and 0.0 <= est["low"] <= est["value"] <= est["high"] <= 1.0
    assert set(est["versus_realized"]) == {"estimated", "realized", "gap", "diverged"}
    assert 0.0 < est["macro_f1"] <= 1.0
    assert f"estimated:   accuracy {est['value']:.3f}" in text
    assert f"macro-F1 {est['macro_f1']:.3f}" in text
    _, out, _ = _run(capsys, "models", *state)
    assert "*v2" in out and "refused" in out
    _, out, _ = _run(capsys, "models", *state, "--lineage")
    assert "v3 ← v2 ← v1 (refused)" in out


def test_rollback_restores_the_previous_champion_whole(
    burst: Any, tmp_path: Path, capsys: Any
) -> None:
    cfg, _ = burst
    state = tmp_path / "state"
    shutil.copytree(cfg.state_dir, state)
    copy_cfg = cfg.model_copy(update={"state_dir": state})
    code, out, _ = _run(capsys, "rollback", "--state-dir", str(state))
    assert code == 0 and "v2 → v1" in out
    db = Database.for_state_dir(state, None)
    events = EventLog(db)
    last = events.last(ev.MODEL_ROLLED_BACK)
    assert last is not None and last.raw["from"] == "v2" and last.raw["to"] == "v1"
    # a daemon started on it serves v1 with v1's reference window
    d = Daemon(copy_cfg)
    d.open()
    try:
        assert d.unit is not None and d.unit.version == "v1"
        assert d.unit.reference.shape == (
            len(Registry(db, state / "models", events).load("v1").tensors["reference"]["x"]),
            len(cfg.schema.features),
        )
    finally:
        d.close("test")
    code, _, err = _run(capsys, "rollback", "--state-dir", str(state))
    assert code == 1 and "no previous champion" in err and err.count("\n") == 1


def test_refusals_name_what_was_wrong_in_one_line(burst: Any, tmp_path: Path, capsys: Any) -> None:
    cfg, _ = burst
    state = ["--state-dir", str(cfg.state_dir)]
    code, _, err = _run(capsys, "rollback", *state, "v99")
    assert code == 1 and err == "driftloop rollback: unknown model version 'v99'\n"  # both quotes
    code, _, err = _run(capsys, "reject", *state, "v99")
    assert code == 1 and err.endswith("no model version 'v99'\n")
    for bad in ("-3", "0"):  # -3 used to drop the first 3 events, 0 showed them all
        code, out, err = _run(capsys, "events", *state, "--limit", bad)
        assert code == 2 and out == "" and "--limit: must be a positive" in err
    code, _, err = _run(capsys, "report", *state, "--out", str(tmp_path))
    assert code == 2 and "is a directory" in err and err.count("\n") == 1
    assert list(tmp_path.parent.glob(f".{tmp_path.name}.tmp")) == []


def test_a_closed_pipe_is_not_an_error(
    burst: Any, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``driftloop events | head`` used to end with 'BrokenPipeError' on stderr and exit 1."""
    cfg, _ = burst
    read, write = os.pipe()
    os.close(read)
    with open(write, "w", encoding="utf-8", closefd=False) as gone:
        monkeypatch.setattr(sys, "stdout", gone)
        code = main(["events", "--state-dir", str(cfg.state_dir)])
        monkeypatch.undo()
    os.close(write)
    assert code == 0 and capsys.readouterr().err == ""


def test_a_running_daemon_follows_a_rollback(burst: Any, tmp_path: Path) -> None:
    cfg, _ = burst
    state = tmp_path / "state"
    shutil.copytree(cfg.state_dir, state)
    d = Daemon(cfg.model_copy(update={"state_dir": state}))
    d.open()
    try:
        assert d.unit is not None and d.unit.version == "v2"
        d.registry.rollback(None, reason="test")
        d.step()
        assert d.unit.version == "v1"
    finally:
        d.close("test")


def test_validate(capsys: Any, tmp_path: Path) -> None:
    code, out, _ = _run(capsys, "validate", str(ROOT / "configs" / "demo.yaml"))
    assert code == 0 and "ok:" in out and "detector: adwin" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (ROOT / "configs" / "demo.yaml").read_text().replace("warmup_rows", "warmpu_rows")
    )
    code, _, err = _run(capsys, "validate", str(bad))
    assert code == 2 and "unknown key 'policy.warmpu_rows'" in err and err.count("\n") == 1
    # what loads but does not build (a freeze pattern matching no parameter) names the
    # file as a load error does
    bad.write_text(
        (ROOT / "configs" / "demo.yaml")
        .read_text()
        .replace("mix: 0.5}", 'mix: 0.5, adapt: {freeze: ["zz*"]}}', 1)
    )
    code, _, err = _run(capsys, "validate", str(bad))
    assert code == 2 and err.count("\n") == 1, err
    assert f"{bad}: 'retrain.strategy.adapt.freeze': 'zz*' matches no parameter" in err, err
    # a detector that loads but cannot build (DDM on a numeric feature) names its key
    bad.write_text(
        (ROOT / "configs" / "demo.yaml")
        .read_text()
        .replace("{kind: adwin, signal: error, delta: 0.002}", "{kind: ddm, signal: age}")
    )
    code, _, err = _run(capsys, "validate", str(bad))
    assert code == 2 and err.count("\n") == 1, err
    assert f"{bad}: 'detectors[0]' (ddm): DDM watches" in err and "not feature 'age'" in err


def test_missing_state_is_one_clear_line(capsys: Any, tmp_path: Path) -> None:
    code, _, err = _run(capsys, "status", "--state-dir", str(tmp_path / "nowhere"))
    assert code == 2 and "no driftloop state" in err and err.count("\n") == 1
    code, _, err = _run(capsys, "events")
    assert code == 2 and "--config" in err


def test_bootstrap_refuses_when_there_is_a_champion(burst: Any, capsys: Any) -> None:
    cfg, _ = burst
    d = Daemon(cfg)
    with pytest.raises(Exception, match="already has a champion"):
        d.bootstrap()
    assert isinstance(cfg, DriftloopConfig)


def test_serve_shows_the_review_page_of_a_finished_run(burst: Any, tmp_path: Path) -> None:
    import socket
    import time
    import urllib.request

    import yaml

    cfg, _ = burst
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json", by_alias=True)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli.main", "serve", "--config", str(path),
         "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        page = ""
        end = time.monotonic() + 120
        while time.monotonic() < end and not page:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ui", timeout=5) as r:
                    page = r.read().decode()
            except OSError:
                time.sleep(0.5)
        assert "v2 promoted" in page and "v3 refused" in page
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_on_a_port_it_cannot_use_is_one_line(burst: Any, tmp_path: Path, capsys: Any) -> None:
    """It used to print the page's URL, then uvicorn's own ERROR line (port in use), or
    hang (port out of range)."""
    import socket

    import yaml

    cfg, _ = burst
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json", by_alias=True)))
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        code, out, err = _run(capsys, "serve", "--config", str(path), "--port", str(port))
    assert code == 1 and out == "" and err.count("\n") == 1
    assert err.startswith(f"driftloop serve: cannot serve the review page on 127.0.0.1:{port}: ")
    code, out, err = _run(capsys, "serve", "--config", str(path), "--port", "99999")
    assert code == 1 and out == "" and "port must be 0-65535" in err and err.count("\n") == 1
