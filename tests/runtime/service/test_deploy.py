"""deploy/: the Prometheus alerting rules and the Grafana dashboard name only metrics the
daemon exports (and the rules pass ``promtool check rules`` where promtool is installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from runtime.service.prometheus import build_registry
from runtime.store.db import Database
from runtime.store.events import EventLog
from runtime.store.versions import Registry

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
RULES = DEPLOY / "prometheus" / "driftloop-alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "driftloop-dashboard.json"
NAME = re.compile(r"\bdriftloop_[a-z0-9_]+")
SUFFIXES = {"counter": ["", "_total", "_created"], "histogram": ["_bucket", "_sum", "_count"],
            "summary": ["_sum", "_count"], "gauge": [""]}


def _exported(tmp_path: Path) -> set[str]:
    db = Database.for_state_dir(tmp_path, None)
    db.create_all()
    events = EventLog(db)
    status = {"detectors": {"adwin": {"signal": "error", "statistic": 0.1, "threshold": 0.2,
                                      "drift": False}}, "instance": "a", "leader": True}
    prom, _ = build_registry(db, Registry(db, tmp_path / "models", events), lambda: status)
    text = generate_latest(prom).decode()
    db.dispose()
    names: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.M):
        base = name.removesuffix("_total")
        names |= {base + s for s in SUFFIXES.get(kind, [""])}
    return names


def _rule_exprs() -> list[str]:
    doc = yaml.safe_load(RULES.read_text())
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


def test_every_alert_names_metrics_the_daemon_exports(tmp_path: Path) -> None:
    exported = _exported(tmp_path)
    doc = yaml.safe_load(RULES.read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert len(rules) >= 10 and len({r["alert"] for r in rules}) == len(rules)
    for rule in rules:
        used = set(NAME.findall(rule["expr"]))
        assert used or "up{" in rule["expr"], rule["alert"]
        assert used <= exported, (rule["alert"], used - exported)
        assert rule["labels"]["severity"] in {"page", "warn"}
        assert rule["annotations"]["summary"]


def test_every_dashboard_panel_queries_exported_metrics(tmp_path: Path) -> None:
    exported = _exported(tmp_path)
    dash = json.loads(DASHBOARD.read_text())
    panels = dash["panels"]
    assert len({p["id"] for p in panels}) == len(panels) >= 10
    for panel in panels:
        assert panel["targets"] and {"x", "y", "w", "h"} <= set(panel["gridPos"])
        for target in panel["targets"]:
            used = set(NAME.findall(target["expr"]))
            assert used and used <= exported, (panel["title"], used - exported)
    for note in dash["annotations"]["list"]:
        assert set(NAME.findall(note["expr"])) <= exported


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_rule_exprs())} rules found" in done.stdout
