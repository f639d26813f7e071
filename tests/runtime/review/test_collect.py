"""The review: the story in plain words, the self-contained HTML report, the /ui router."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from runtime.cli.main import main
from runtime.config import DriftloopConfig
from runtime.monitoring.trace import DetectorTrace, read_traces, write_trace
from runtime.review.collect import collect, open_review
from runtime.review.page import render, write_report
from runtime.review.story import gate_headline as headline_of
from runtime.review.story import story
from runtime.service.ui import ui_router
from runtime.store import events as ev
from runtime.store.db import Database
from runtime.store.events import Event, EventLog
from runtime.store.versions import Registry

Burst = tuple[DriftloopConfig, list[Event]]


def gate_headline(p: dict[str, Any]) -> tuple[str, str]:
    """The headline of a gate payload given as the JSON the daemon stores."""
    return headline_of(ev.Gate.from_json(p))


def _check(
    name: str, champion: float, candidate: float, passed: bool, threshold: str, **numbers: float
) -> dict[str, Any]:
    return {
        "name": name,
        "metric": "accuracy",
        "champion": champion,
        "candidate": candidate,
        "passed": passed,
        "threshold": threshold,
        "n": 300,
        "numbers": numbers,
        "reason": f"{name} reason",
    }


def test_gate_headlines_say_why_in_plain_words() -> None:
    refused = {
        "candidate": "v3",
        "champion": "v2",
        "passed": False,
        "next": "refuse",
        "checks": [
            _check("new_data", 0.573, 0.568, False, "gain >= 0.02", gain=-0.005),
            _check("golden:v1", 0.97, 0.96, True, "loss <= 0.03", gain=-0.01),
        ],
        "reasons": ["..."],
    }
    tone, head = gate_headline(refused)
    assert tone == "bad"
    assert head == "v3 refused: it did not beat v2 on the new data (0.568 vs 0.573, needed +0.02)"

    promoted = {
        "candidate": "v2",
        "champion": "v1",
        "passed": True,
        "next": "promote",
        "checks": [
            _check(
                "new_data",
                0.737,
                0.953,
                True,
                "gain >= 0.02 or candidate >= 0.90",
                gain=0.216,
                gain_lower=0.17,
            ),
            _check("golden:v1", 0.978, 0.975, True, "loss <= 0.03", gain=-0.003),
        ],
    }
    tone, head = gate_headline(promoted)
    assert tone == "good"
    assert head.startswith("v2 promoted: it beat v1 on the new data (0.953 vs 0.737, needed +0.02")
    assert "v1's golden set (0.975 vs 0.978, allowed −0.03)" in head

    forgot = dict(
        refused, checks=[_check("golden:v1", 0.97, 0.90, False, "loss <= 0.03", loss_upper=0.1)]
    )
    assert (
        "forgot too much on v1's golden set (0.900 vs 0.970, allowed −0.03"
        in (gate_headline(forgot)[1])
    )
    manual = {
        "candidate": "v4",
        "champion": "v2",
        "passed": True,
        "next": "await approval",
        "checks": [],
    }
    assert gate_headline(manual) == ("warn", "v4 passed the gate and awaits a person's approval")
    rejected = {
        "candidate": "v4",
        "passed": False,
        "checks": [],
        "rejected_by": "ana",
        "reasons": ["Rejected by ana: looks off."],
    }
    assert gate_headline(rejected)[1] == "v4 rejected by ana: looks off."
    broken = {
        "candidate": "v5",
        "champion": "v2",
        "passed": False,
        "checks": [
            {
                "name": "integrity:candidate",
                "metric": "-",
                "champion": None,
                "candidate": None,
                "passed": False,
                "threshold": "readable and intact",
                "reason": "The candidate v5 failed its integrity check.",
            }
        ],
    }
    assert gate_headline(broken)[1] == ("v5 refused: The candidate v5 failed its integrity check.")


def test_story_of_a_drifting_run(burst: Burst) -> None:
    _, events = burst
    chapters = story(events)
    kinds = [c.kind for c in chapters]
    assert kinds[0] == "bootstrap"
    retrains = [c for c in chapters if c.kind == "retrain"]
    assert len(retrains) == 2
    first, second = retrains
    assert first.tone == "good" and first.headline.startswith("v2 promoted: it ")
    assert second.tone == "bad" and second.headline.startswith("v3 refused: ")
    assert re.search(r"\(\d\.\d{3} vs \d\.\d{3}", second.headline)  # numbers, not just words
    assert any(line.startswith("Why: Row ") for line in first.lines)  # the drift that caused it
    assert any("stayed the champion" in line for line in second.lines)
    assert first.progress and second.gate is not None
    drift_ids = {e.id for e in events if e.kind == ev.DRIFT_DETECTED}
    told = {i for c in chapters for i in c.events}
    assert drift_ids <= told  # every drift is told somewhere (a cause or an alert)


def test_story_of_an_approved_candidate_no_longer_says_it_awaits(tmp_path: Path) -> None:
    """Once approved, the chapter says so (it kept 'awaits a person's approval' in warning
    colours while its own outcome line, status and the models table said champion)."""
    from runtime.promotion.approval import approve
    from tests.runtime.promotion.test_promotion import manual_world

    w = manual_world(tmp_path)
    approve(w.registry, w.events, "v2")
    v2, v3 = (c for c in story(w.events.list()) if c.kind == "retrain")
    assert v2.tone == "good" and v2.headline.startswith("v2 passed the gate and was approved: ")
    assert "Outcome: v2 became the champion (replacing v1)." in v2.lines
    assert v3.tone == "warn" and "awaits a person's approval" in v3.headline


def test_story_of_a_rejected_candidate_says_who_rejected_it_once(tmp_path: Path) -> None:
    """The headline read 'v3 rejected by an operator: Rejected by an operator: bad feed.'."""
    from runtime.promotion.approval import reject
    from tests.runtime.promotion.test_promotion import manual_world

    w = manual_world(tmp_path)
    reject(w.registry, w.events, "v3", "bad feed")
    reject(w.registry, w.events, "v2", "  ")
    v2, v3 = (c for c in story(w.events.list()) if c.kind == "retrain")
    assert v3.tone == "bad" and v3.headline == "v3 rejected by an operator: bad feed."
    assert v2.tone == "bad" and v2.headline == "v2 rejected by an operator: no reason given."


def test_live_page_offers_no_approve_for_a_candidate_with_stale_evidence(tmp_path: Path) -> None:
    """A candidate gated against an earlier champion gets no Approve button (the API refuses
    it: 'evidence is stale'), only Reject and a note saying why; its timeline entry says the
    same (it said the candidate 'awaits a person's approval')."""
    from runtime.promotion.approval import approve
    from runtime.review.page import Live
    from tests.runtime.promotion.test_promotion import manual_world

    w = manual_world(tmp_path)
    review = collect(w.cfg.state_dir, w.db, w.events, w.registry)
    fresh = render(review, report_href=str, live=Live())
    assert 'data-verb="approve" data-version="v3"' in fresh
    assert "v3 passed the gate and awaits" in fresh[fresh.index('<ol class="story">') :]
    approve(w.registry, w.events, "v2")  # v3 was gated against v1; the champion is now v2
    review = collect(w.cfg.state_dir, w.db, w.events, w.registry)
    html = render(review, report_href=str, live=Live())
    assert 'data-verb="approve" data-version="v3"' not in html
    assert 'data-verb="reject" data-version="v3"' in html
    assert "v3 was gated against v1, but the champion is now v2" in html
    assert "evidence is stale" in html
    (v3,) = (c for c in review.chapters if c.headline.startswith("v3 passed the gate"))
    assert v3.headline.startswith("v3 passed the gate but cannot be approved (its evidence is ")
    why = "v3 was gated against v1, but the champion is now v2: its evidence is stale"
    assert any(line.startswith(f"Cannot approve: {why}") for line in v3.lines)
    timeline = html[html.index('<ol class="story">') :]
    timeline = timeline[: timeline.index("</ol>")]
    assert "v3 passed the gate and awaits" not in timeline
    assert f"Cannot approve: {why}" in timeline
    log = html[html.index('<div class="log">') :]  # the event log's rows said it too
    assert "passed the gate and awaits" not in log
    assert "v2 passed the gate and was approved" in log
    assert "v3 passed the gate but cannot be approved (its evidence is stale)" in log


def test_event_log_rows_of_decided_candidates_no_longer_say_they_await(tmp_path: Path) -> None:
    from runtime.promotion.approval import reject
    from runtime.review.page import Live
    from tests.runtime.promotion.test_promotion import manual_world

    w = manual_world(tmp_path)
    html = render(collect(w.cfg.state_dir, w.db, w.events, w.registry), report_href=str,
                  live=Live())
    log = html[html.index('<div class="log">') :]
    assert "v2 passed the gate and awaits a person" in log
    reject(w.registry, w.events, "v2", "bad feed")
    html = render(collect(w.cfg.state_dir, w.db, w.events, w.registry), report_href=str,
                  live=Live())
    log = html[html.index('<div class="log">') :]
    assert "v2 passed the gate and awaits" not in log
    assert "v2 passed the gate and was then rejected by a person" in log
    assert "v2 rejected by an operator: bad feed." in log
    assert "v3 passed the gate and awaits a person" in log  # still waiting


def test_report_file_is_self_contained_and_complete(burst: Burst, tmp_path: Path) -> None:
    cfg, events = burst
    review = open_review(cfg, cfg.state_dir)
    out = write_report(review, tmp_path / "sub" / "report.html")
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>")
    # nothing is fetched: no external scripts, styles, images or frames
    assert not re.search(r"<(script|img|iframe|link)[^>]*\b(src|href)=", html)
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert "default-src 'none'" in html
    for e in events:
        assert f'id="ev-{e.id}"' in html
    for version in ("v1", "v2", "v3"):
        assert f"<b>{version}</b>" in html
    assert "v3 refused: " in html and "v2 promoted: it " in html
    assert html.count('<svg class="chart"') >= 3  # two detectors + retrain curves
    assert review.matrix is not None and len(review.matrix.rows) == 3
    assert 'class="matrix"' in html
    assert set(review.traces) == {"adwin", "ks"}
    assert review.traces["adwin"][1] and review.traces["adwin"][1][0].value is not None


def test_cli_report_from_a_state_dir(
    burst: Burst, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, _ = burst
    out = tmp_path / "r.html"
    assert main(["report", "--state-dir", str(cfg.state_dir), "--out", str(out)]) == 0
    assert "champion v2" in capsys.readouterr().out
    html = out.read_text(encoding="utf-8")
    assert "Give the config (--config)" in html  # no config: no forgetting matrix, said so
    assert main(["report", "--state-dir", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert "no driftloop state" in capsys.readouterr().err


def _state(tmp_path: Path) -> tuple[Database, EventLog, Registry]:
    db = Database.for_state_dir(tmp_path, None)
    db.create_all()
    log = EventLog(db)
    return db, log, Registry(db, tmp_path / "models", log)


def test_values_are_escaped_and_drift_reports_linked(tmp_path: Path) -> None:
    db, log, registry = _state(tmp_path)
    evil = "<script>alert(1)</script>"
    e = log.append(
        ev.DRIFT_DETECTED,
        {
            "detector": "ks",
            "signal": "features",
            "row": 10,
            "onset": 5,
            "action": "alert",
            "reason": evil,
            "statistic": 0.001,
            "threshold": 0.01,
            "details": {"features": [{"feature": evil, "drifted": True, "p_adjusted": 0.001}]},
        },
    )
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / f"drift-event-{e.id}-ks.html").write_text("<html></html>")
    review = collect(tmp_path, db, log, registry)
    assert review.reports == {e.id: f"drift-event-{e.id}-ks.html"}
    html = render(review, report_href=lambda name: f"reports/{name}")
    assert evil not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert f'href="reports/drift-event-{e.id}-ks.html"' in html
    assert "Nothing has happened yet" not in html  # the alert is a chapter
    db.dispose()


def test_trace_is_bounded_and_round_trips(tmp_path: Path) -> None:
    t = DetectorTrace(max_points=50)
    for row in range(1000):
        t.record(
            "adwin",
            "error",
            row,
            value=0.1,
            statistic=None,
            threshold=None,
            drift=row in (500, 501),
            champion="v1" if row < 600 else "v2",
        )
    pts = t.points("adwin")
    assert len(pts) <= 50
    assert {500, 501} <= {p.row for p in pts}  # alarms are never thinned away
    assert pts[0].row == 0 and pts[-1].row > 900  # the whole run stays in view
    assert DetectorTrace.from_state(t.state()).state() == t.state()
    db, _, _ = _state(tmp_path)
    with db.begin() as conn:
        write_trace(conn, "detector_trace", t)
        write_trace(conn, "detector_trace:b", DetectorTrace())
    got = read_traces(db)
    assert list(got) == ["adwin"] and got["adwin"][0] == "error" and got["adwin"][1] == pts
    db.dispose()


def test_ui_router_reads_freely_and_checks_the_token(burst: Burst) -> None:
    cfg, events = burst
    db = Database.for_state_dir(cfg.state_dir, None)
    log = EventLog(db)
    host = SimpleNamespace(
        cfg=cfg, db=db, events=log, registry=Registry(db, cfg.state_dir / "models", log)
    )
    app = FastAPI()
    app.state.token = "tok"
    app.include_router(ui_router(host))  # the same call create_app makes
    client = TestClient(app)
    r = client.get("/ui")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    nonce = re.search(r"'nonce-([^']+)'", r.headers["content-security-policy"])
    assert nonce and f'<script nonce="{nonce.group(1)}">' in r.text
    assert 'data-mode="live"' in r.text and 'data-verb="rollback"' in r.text
    assert f'id="ev-{events[-1].id}"' in r.text
    assert client.get("/ui?limit=3").text.count('<details class="ev"') == 3
    assert client.post("/ui/session").status_code == 401
    bad = client.post("/ui/session", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 403
    ok = client.post("/ui/session", headers={"Authorization": "Bearer tok"})
    assert ok.status_code == 204
    assert client.get("/ui/reports/drift-none.html").status_code == 404
    assert client.get("/ui/reports/..%2Fdriftloop.db").status_code == 404
    db.dispose()


def test_a_gain_too_uncertain_is_not_called_a_loss() -> None:
    p = {
        "candidate": "v3",
        "champion": "v2",
        "passed": False,
        "confidence": 0.95,
        "checks": [
            _check(
                "new_data",
                0.546,
                0.571,
                False,
                "gain >= 0.02 or candidate >= 0.90",
                gain=0.025,
                gain_lower=-0.004,
            )
        ],
    }
    assert gate_headline(p)[1] == (
        "v3 refused: its gain over v2 on the new data was too uncertain to count "
        "(0.571 vs 0.546, needed +0.02 or ≥ 0.9 at 95% confidence)"
    )


def test_feature_table_caption_names_how_features_were_decided() -> None:
    from runtime.review.page_html import feature_table

    row = {"feature": "age", "type": "numeric", "statistic": 0.4, "drifted": True}
    base = {"test": "psi", "features": [row], "reference_rows": 600, "window_rows": 300}
    pvalues = feature_table({**base, "calibration": "bootstrap", "correction": "bonferroni"})
    assert "psi test per feature, bonferroni correction;" in pvalues
    raw = feature_table({**base, "calibration": "threshold", "correction": "bonferroni"})
    assert "raw statistic against the threshold (no p-values);" in raw
    assert "correction" not in raw  # a threshold detector corrects nothing


def test_live_accuracy_of_the_burst_beside_each_version(burst: Burst) -> None:
    cfg, _ = burst
    review = open_review(cfg, cfg.state_dir, matrix=False)
    per = dict(review.realized.by_version)
    assert list(per) == ["v1", "v2"] and all(r.rows > 0 for r in per.values())
    html = render(review, report_href=lambda name: name)
    section = html[html.index('<section id="realized">') : html.index('<section id="detectors">')]
    assert 'aria-label="realized accuracy of the served predictions"' in section
    assert "served by v1" in section and "served by v2" in section
    assert ">v2 promoted</text>" in section  # where v2 took over
    for version, r in per.items():
        assert f'<li data-version="{version}"><b>{version}</b>: {r.value:.3f} on the' in section
    models = html[html.index('<section id="models">') : html.index('<section id="realized">')]
    assert f"{per['v2'].value:.3f} ({per['v2'].rows:,} rows)" in models


def test_live_accuracy_marks_a_rollback_and_says_when_nothing_was_served(
    tmp_path: Path,
) -> None:
    import numpy as np

    from runtime.store.db import rows
    from runtime.store.served import record

    db, log, registry = _state(tmp_path)
    html = render(collect(tmp_path, db, log, registry), report_href=lambda n: n)
    assert "No labelled row has been served yet" in html
    with db.begin() as conn:
        conn.execute(rows.insert(), [
            {"row_id": f"r{i}", "ingested_at": "2026-01-01T00:00:00.000Z", "source": "t",
             "features": b"", "label": 1} for i in range(30)
        ])
        for lo, version in ((1, "v1"), (11, "v2"), (21, "v1")):
            seqs = np.arange(lo, lo + 10, dtype=np.int64)
            record(conn, seqs, np.ones(10) if version == "v1" else np.zeros(10), version)
    log.append(ev.MODEL_ROLLED_BACK, {"from": "v2", "to": "v1", "reason": "watch"})
    review = collect(tmp_path, db, log, registry)
    assert [(v, r.rows, r.value) for v, r in review.realized.by_version] == [
        ("v1", 20, 1.0), ("v2", 10, 0.0)
    ]
    html = render(review, report_href=lambda n: n)
    assert ">v2 promoted</text>" in html and ">back to v1</text>" in html
    assert "Over the whole stream 0.667 on 30 labelled served rows" in html
    db.dispose()


def test_estimated_accuracy_beside_the_realized_marks_where_they_diverge(
    tmp_path: Path,
) -> None:
    import numpy as np

    from runtime.review.page_estimated import diverged_spans, estimated_section
    from runtime.store import estimated
    from runtime.store.db import rows
    from runtime.store.served import record

    db, log, registry = _state(tmp_path)
    html = render(collect(tmp_path, db, log, registry), report_href=lambda n: n)
    assert "the estimated accuracy appears once rows are scored" in html
    with db.begin() as conn:  # rows 1-100 right as expected; rows 101-200 all wrong
        conn.execute(rows.insert(), [
            {"row_id": f"r{i}", "ingested_at": "2026-01-01T00:00:00.000Z", "source": "t",
             "features": b"", "label": 1 if i < 190 else 0} for i in range(200)
        ])
        seqs = np.arange(1, 201, dtype=np.int64)
        right = (np.arange(100) % 10 != 0).astype(float)  # 90 % predicted 1: right
        record(conn, seqs[:100], right, "v1")
        record(conn, seqs[100:], np.zeros(100), "v1")
        estimated.record(conn, seqs, np.full(200, 0.9), "v1")
        estimated.record_probabilities(conn, seqs, np.tile([0.1, 0.9], (200, 1)), "v1")
    review = collect(tmp_path, db, log, registry)
    spans = diverged_spans(review.estimated, review.realized.series, error=0.0)
    assert spans and all(r.first_row > 100 for _, r in spans)  # only the concept change
    html = render(review, report_href=lambda n: n)
    section = html[html.index('<section id="realized">') : html.index('<section id="detectors">')]
    assert 'aria-label="estimated accuracy (calibrated confidence, no labels)"' in section
    assert "diverged: realized" in section
    summary = estimated.estimated_summary(db, "v1", {})  # as status reads it for v1
    line = estimated_section(review.estimated, review.realized.series, summary)
    f1 = estimated.expected_macro_f1(np.tile([0.1, 0.9], (200, 1)))
    assert f", macro-F1 {f1:.3f} on its last 200 rows" in line
    db.dispose()
