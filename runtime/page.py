"""The review page: a :class:`~runtime.report.Review` rendered as one HTML document.

Everything is inline (CSS, script, SVG charts); nothing is fetched, so the file opens
with no network. Every value from the state is escaped. The served page
(``live=``) adds the operator's token box and the approve/reject/rollback buttons, which
call the API's POST endpoints; without a valid token they stay hidden and the API
refuses them anyway.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from runtime import events as ev
from runtime.charts import Band, Mark, line_chart
from runtime.events import Event
from runtime.page_assets import CSS, JS
from runtime.presenter import event_summary
from runtime.report import Review
from runtime.story import Chapter, gate_headline
from runtime.trace import Point

__all__ = ["Live", "render"]

HIDDEN_BY_DEFAULT = frozenset({ev.RETRAIN_PROGRESS})
TAGS = {"good": "promoted", "bad": "refused", "warn": "attention", "info": "info"}
KIND_TONE = {
    ev.DRIFT_DETECTED: "warn",
    ev.GATE_PASSED: "good",
    ev.GATE_FAILED: "bad",
    ev.MODEL_PROMOTED: "good",
    ev.MODEL_ROLLED_BACK: "bad",
    ev.RETRAIN_FAILED: "bad",
    ev.INGEST_REJECTED: "warn",
    ev.RETRAIN_STARTED: "info",
    ev.RETRAIN_FINISHED: "info",
}


@dataclass(frozen=True)
class Live:
    """Settings of the served page: where the API and the UI routes are, and the CSP nonce."""

    api_base: str = ""
    ui_base: str = "/ui"
    nonce: str = ""


def _e(x: Any) -> str:
    return escape("" if x is None else str(x))


def _n(x: Any, digits: int = 3) -> str:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return _e(x) if x is not None else "–"
    if isinstance(x, int):
        return f"{x:,}"
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e6):
        return f"{x:.3g}"
    return f"{x:.{digits}f}"


def _evlink(i: int) -> str:
    return f'<a class="evl" href="#ev-{i}">#{i}</a>'


def _kv(pairs: Iterable[tuple[str, Any]]) -> str:
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in pairs if v not in (None, ""))
    return f'<dl class="kv">{rows}</dl>'


def _table(
    head: Sequence[str],
    rows: Iterable[Sequence[str]],
    num: Sequence[int] = (),
    row_cls: Sequence[str] | None = None,
) -> str:
    th = "".join(
        f'<th class="num">{h}</th>' if i in num else f"<th>{h}</th>" for i, h in enumerate(head)
    )
    body = []
    for r, cells in enumerate(rows):
        cls = f' class="{row_cls[r]}"' if row_cls and row_cls[r] else ""
        tds = "".join(
            f'<td class="num">{c}</td>' if i in num else f"<td>{c}</td>"
            for i, c in enumerate(cells)
        )
        body.append(f"<tr{cls}>{tds}</tr>")
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# -- pieces shared by the story and the event details ------------------------------------
def gate_table(p: dict[str, Any], compact: bool = False) -> str:
    checks = [c for c in p.get("checks", []) if isinstance(c, dict)]
    if not checks:
        return f'<p class="reason">{_e(" ".join(p.get("reasons", [])))}</p>'
    rows, cls = [], []
    for c in checks:
        ch, ca = c.get("champion"), c.get("candidate")
        delta = ca - ch if isinstance(ch, int | float) and isinstance(ca, int | float) else None
        ok = bool(c.get("passed"))
        rows.append(
            [
                f'<span class="{"pass" if ok else "fail"}">{"pass" if ok else "FAIL"}</span>',
                _e(c.get("name")),
                _e(c.get("metric")),
                _n(ch),
                _n(ca),
                ("+" if delta is not None and delta >= 0 else "") + _n(delta),
                _e(c.get("threshold")),
                _n(c.get("n")),
                f'<span class="reason">{_e(c.get("reason"))}</span>',
            ]
        )
        cls.append("" if ok else "drifted")
    head = [
        "",
        "check",
        "metric",
        f"champion {_e(p.get('champion'))}",
        f"candidate {_e(p.get('candidate'))}",
        "change",
        "rule",
        "rows",
        "why",
    ]
    if compact:  # the story's headline already says why
        keep = (0, 1, 3, 4, 5, 6)
        head = [head[i] for i in keep]
        rows = [[row[i] for i in keep] for row in rows]
        return _table(head, rows, num=(2, 3, 4), row_cls=cls)
    return _table(head, rows, num=(3, 4, 5, 7), row_cls=cls)


def progress_chart(points: Sequence[tuple[int, float, float | None]], title: str) -> str:
    if not points:
        return ""
    return line_chart(
        [(float(e), loss) for e, loss, _ in points],
        title=title,
        y_label="training loss",
        x_label="epoch",
        width=460,
        height=180,
    )


def _feature_table(d: dict[str, Any]) -> str:
    table = [r for r in d.get("features", []) if isinstance(r, dict)]
    table.sort(key=lambda r: (not r.get("drifted"), r.get("p_adjusted") or 1.0))
    rows = [
        [
            _e(r.get("feature")),
            _e(r.get("type")),
            _n(r.get("ref_mean"), 4),
            _n(r.get("cur_mean"), 4),
            _n(r.get("statistic")),
            _n(r.get("p_value")),
            _n(r.get("p_adjusted")),
            '<span class="fail">drifted</span>' if r.get("drifted") else "–",
        ]
        for r in table
    ]
    cls = ["drifted" if r.get("drifted") else "" for r in table]
    head = [
        "feature",
        "type",
        "reference mean",
        "window mean",
        "statistic",
        "p-value",
        "adjusted p",
        "verdict",
    ]
    test = _e(d.get("test") or "")
    note = (
        f'<p class="cap">{test} test per feature, {_e(d.get("correction"))} correction; '
        f"{_n(d.get('reference_rows'))} reference rows vs {_n(d.get('window_rows'))} in the "
        "window.</p>"
    )
    return note + _table(head, rows, num=(2, 3, 4, 5, 6), row_cls=cls)


# -- the story ---------------------------------------------------------------------------
def _chapter(ch: Chapter) -> str:
    ids = " ".join(_evlink(i) for i in ch.events[:12])
    lines = "".join(f"<li>{_e(line)}</li>" for line in ch.lines)
    extra = ""
    if ch.gate is not None or ch.progress:
        gate = (
            (
                f"<h4>Gate: {_e(ch.gate.get('candidate'))} vs {_e(ch.gate.get('champion'))}"
                f"</h4>{gate_table(ch.gate, compact=True)}"
            )
            if ch.gate is not None
            else ""
        )
        extra = (
            f'<div class="cols"><div>{gate}</div><div>'
            f"{progress_chart(ch.progress, f'retraining {ch.version}: loss per epoch')}"
            "</div></div>"
        )
    tag = TAGS.get(ch.tone, ch.kind) if ch.kind == "retrain" else ch.kind
    return (
        f'<li class="ch {ch.tone}" data-kind="{_e(ch.kind)}"><div class="hl">'
        f'<span class="tag">{_e(tag)}</span>{_e(ch.headline)}</div>'
        f'<div class="meta">{_e(ch.ts[:19].replace("T", " "))} UTC · events {ids}</div>'
        f"<ul>{lines}</ul>{extra}</li>"
    )


def _story(r: Review) -> str:
    if not r.chapters:
        return '<p class="note">Nothing has happened yet: no model, no drift.</p>'
    return f'<ol class="story">{"".join(_chapter(c) for c in r.chapters)}</ol>'


# -- models ------------------------------------------------------------------------------
def _actions(r: Review, version: str) -> str:
    out = []
    if version in r.awaiting:
        out.append(
            f'<button class="act primary" data-verb="approve" data-version="{_e(version)}">'
            "Approve</button>"
        )
        out.append(
            f'<button class="act danger" data-verb="reject" data-version="{_e(version)}">'
            "Reject</button>"
        )
    if version in r.rollback_targets:
        out.append(
            f'<button class="act" data-verb="rollback" data-version="{_e(version)}">'
            f"Roll back to {_e(version)}</button>"
        )
    return " ".join(out)


def _models(r: Review, live: bool) -> str:
    if not r.versions:
        return '<p class="note">No model versions yet.</p>'
    nodes = []
    for i, v in enumerate(r.versions):
        if i and v.parent == r.versions[i - 1].version:
            parent = '<span class="arrow">→</span> '
        elif v.parent:
            parent = f'<span class="arrow">· from {_e(v.parent)} →</span> '
        else:
            parent = '<span class="arrow">·</span> ' if i else ""
        nodes.append(
            f'{parent}<span class="node {_e(v.status)}"><b>{_e(v.version)}</b> '
            f'<span class="badge {_e(v.status)}">{_e(v.status)}</span></span>'
        )
    lineage = f'<div class="lineage">{"".join(nodes)}</div>'
    rows = []
    for v in r.versions:
        m, d = v.meta.get("metrics", {}), v.meta.get("data", {})
        hold = m.get("holdout")
        if isinstance(hold, list) and len(hold) >= 2:
            n = _n(hold[2]) if len(hold) > 2 else "?"
            new = f"{_n(hold[0])} → <b>{_n(hold[1])}</b> ({n} rows)"
        elif m.get("val_accuracy") is not None:
            new = f"validation {_n(m.get('val_accuracy'))}"
        else:
            new = "–"
        gold = m.get("golden")
        golden = (
            "; ".join(
                f"{_e(k)}: {_n(x[0])} → {_n(x[1])}"
                for k, x in gold.items()
                if isinstance(x, list) and len(x) >= 2
            )
            if isinstance(gold, dict)
            else (
                f"{_n(m.get('golden_accuracy'))}" if m.get("golden_accuracy") is not None else "–"
            )
        )
        span = (
            f"{_n(d.get('first_row'))}..{_n(d.get('last_row'))} ({_n(d.get('rows'))})" if d else "–"
        )
        star = " ★" if v.version == r.champion else ""
        cells = [
            f"<b>{_e(v.version)}</b>{star}",
            f'<span class="badge {_e(v.status)}">{_e(v.status)}</span>',
            _e(v.parent or "–"),
            _e(v.meta.get("strategy", "–")),
            _e(v.meta.get("trigger_id", "–")),
            span,
            new,
            golden,
            _e(v.created_at[:19].replace("T", " ")),
        ]
        if live:
            cells.append(_actions(r, v.version))
        rows.append(cells)
    head = [
        "version",
        "status",
        "parent",
        "strategy",
        "trigger",
        "trained on rows",
        "new data: champion → this",
        "golden sets: champion → this",
        "created (UTC)",
    ]
    if live:
        head.append('<span class="act">actions</span>')
    cap = (
        '<p class="cap">Each version is the whole unit (weights, rehearsal buffer, reference '
        "window, golden sets). Accuracies are measured when the version was gated: on the "
        "held-out part of its new data and on every earlier golden set, champion first.</p>"
    )
    return lineage + cap + _table(head, rows)


# -- detector charts ---------------------------------------------------------------------
def _bands(points: Sequence[Point]) -> list[Band]:
    out: list[Band] = []
    for p in points:
        if out and out[-1].label == f"champion {p.champion}":
            out[-1] = Band(out[-1].x0, p.row, out[-1].label, out[-1].cls)
        else:
            cls = "band" if len(out) % 2 == 0 else "band alt"
            start = out[-1].x1 if out else p.row
            out.append(Band(start, p.row, f"champion {p.champion}", cls))
    return out


def _detector_chart(
    name: str, signal: str, points: list[Point], alarms: list[Event], r: Review
) -> str:
    marks = [Mark(row, f"data: {seg}", "mark") for row, seg in r.segments]
    marks += [
        Mark(float(a.payload.get("row", 0)), f"#{a.id} {a.payload.get('action')}") for a in alarms
    ]
    values = [(float(p.row), p.value) for p in points if p.value is not None]
    stats = [(float(p.row), p.statistic) for p in points if p.statistic is not None]
    thresholds = [p.threshold for p in points if p.threshold is not None]
    threshold = thresholds[-1] if thresholds else None
    xs = [float(p.row) for p in points] + [m.x for m in marks]
    x_range = (min(xs), max(xs)) if xs else None
    if values:
        label = "error rate" if signal == "error" else f"mean {signal}"
        series: list[tuple[float, float]] = [(x, y) for x, y in values]
        title, thr, log_y = f"{name}: {label} per batch (what it watches)", None, False
        dots = False
        how = (
            f"{_e(name)} watches the champion's {_e(label)} on labelled rows; the line is "
            "its mean per batch"
        )
    else:
        if not stats:
            stats = [
                (float(a.payload.get("row", 0)), float(a.payload["statistic"]))
                for a in alarms
                if isinstance(a.payload.get("statistic"), int | float)
            ]
        series = [(x, y) for x, y in stats]
        dots = len(series) == len([a for a in alarms if a.payload.get("statistic") is not None])
        positive = all(0 < y <= 1 for _, y in series)
        log_y = bool(series) and positive and threshold is not None and threshold <= 0.2
        label = "smallest adjusted p-value" if log_y else "statistic"
        title, thr = f"{name} on {signal}: {label}", threshold
        how = (
            f"{_e(name)} compares a window of recent rows with its reference; drift when the "
            "p-value falls below the threshold"
            if log_y
            else f"{_e(name)}'s statistic"
        )
    if not series and not alarms:
        return ""
    chart = line_chart(
        series,
        title=title,
        y_label=label,
        threshold=thr,
        log_y=log_y,
        marks=marks,
        bands=_bands(points),
        x_range=x_range,
        dots_only=not values and dots,
    )
    seg = "; dashed grey lines: where the stream's data changed" if r.segments else ""
    return (
        f'{chart}<p class="cap">{how}. Red lines: its alarms (event number and action)'
        f"{seg}; shading: which version was champion.</p>"
    )


def _detectors(r: Review) -> str:
    alarms: dict[str, list[Event]] = {}
    for e in r.events:
        if e.kind == ev.DRIFT_DETECTED:
            alarms.setdefault(str(e.payload.get("detector")), []).append(e)
    names = list(r.traces) + [n for n in alarms if n not in r.traces]
    parts = []
    for name in names:
        signal, points = r.traces.get(name, ("", []))
        if not signal and alarms.get(name):
            signal = str(alarms[name][0].payload.get("signal"))
        parts.append(_detector_chart(name, signal, points, alarms.get(name, []), r))
    body = "".join(p for p in parts if p)
    return body or '<p class="note">No detector statistics recorded yet.</p>'


# -- forgetting matrix -------------------------------------------------------------------
def _matrix(r: Review) -> str:
    mat = r.matrix
    if mat is None:
        return f'<p class="note">{_e(r.matrix_note)}</p>'
    parents = {v.version: v.parent for v in r.versions}
    by_version = {v: accs for v, _, accs in mat.rows}
    rows = []
    for version, status, accs in mat.rows:
        cells = [
            f"<b>{_e(version)}</b>{' ★' if version == r.champion else ''}",
            f'<span class="badge {_e(status)}">{_e(status)}</span>',
        ]
        base = by_version.get(parents.get(version) or "")
        for j, a in enumerate(accs):
            if a is None:
                cells.append('<td class="h">–</td>')
                continue
            heat = min(4, max(0, int((a - 0.5) / 0.1))) if a >= 0.5 else 0
            diff = ""
            before = base[j] if base is not None else None
            if before is not None:
                dlt = a - before
                if dlt <= -0.02:
                    diff = f'<span class="drop">↓{-dlt:.3f}</span>'
                elif dlt >= 0.02:
                    diff = f'<span class="rise">↑{dlt:.3f}</span>'
            cells.append(f'<td class="h h{heat}">{a:.3f}{diff}</td>')
        rows.append(cells)
    th = "".join(f'<th class="num">{_e(n)}</th>' for n in mat.distributions)
    body = "".join(
        "<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in cells) + "</tr>"
        for cells in rows
    )
    return (
        f'<table class="matrix"><thead><tr><th>version</th><th>status</th>{th}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
        '<p class="cap">Accuracy of each version (row) on clean held-out samples of each '
        "distribution the stream went through (column). Arrows compare a version with its "
        "parent: ↑ it learned the new data, ↓ it forgot some of the old.</p>"
    )


# -- event log ---------------------------------------------------------------------------
def _detail(
    e: Event,
    r: Review,
    href: Callable[[str], str],
    progress: dict[str, list[tuple[int, float, float | None]]],
) -> str:
    p = e.payload
    out = []
    if e.kind == ev.DRIFT_DETECTED:
        d = p.get("details") or {}
        win = p.get("window")
        out.append(
            _kv(
                [
                    ("detector", _e(p.get("detector"))),
                    ("signal", _e(p.get("signal"))),
                    ("alarm at row", _n(p.get("row"))),
                    ("change began near row", _n(p.get("onset"))),
                    (
                        "window",
                        f"rows {_n(win[0])}..{_n(win[1])}"
                        if isinstance(win, list) and win
                        else None,
                    ),
                    ("statistic", _n(p.get("statistic"))),
                    ("threshold", _n(p.get("threshold"))),
                    (
                        "mean before → after",
                        f"{_n(d.get('mean_before'))} → {_n(d.get('mean_after'))}"
                        if d.get("mean_after") is not None
                        else None,
                    ),
                    ("decision", f"<b>{_e(p.get('action'))}</b>: {_e(p.get('reason'))}"),
                ]
            )
        )
        if e.id in r.reports:
            out.append(
                f'<p><a href="{_e(href(r.reports[e.id]))}">Open the drift report '
                f"({_e(r.reports[e.id])})</a></p>"
            )
        if isinstance(d.get("features"), list):
            out.append(_feature_table(d))
    elif e.kind in (ev.GATE_PASSED, ev.GATE_FAILED):
        tone, head = gate_headline(p)
        out.append(
            f'<p><span class="badge {tone}">{_e(p.get("next") or tone)}</span> '
            f"<b>{_e(head)}</b></p>"
        )
        out.append(gate_table(p))
        out.append(
            _kv(
                [
                    ("mode", _e(p.get("mode"))),
                    ("stage", _e(p.get("stage"))),
                    ("confidence", _n(p.get("confidence"), 2)),
                    ("test", _e(p.get("test"))),
                    ("trigger", _e(p.get("trigger_id"))),
                ]
            )
        )
    elif e.kind.startswith("retrain."):
        keys = [
            "trigger_id",
            "champion",
            "candidate",
            "strategy",
            "onset",
            "upto",
            "labelled_rows",
            "epochs",
            "samples",
            "seconds",
            "final_loss",
            "stopped_by",
            "rows_train",
            "rows_holdout",
            "reason",
            "epoch",
            "loss",
        ]
        out.append(_kv((k, _n(p[k])) for k in keys if k in p))
        curve = progress.get(str(p.get("trigger_id")), [])
        if curve and e.kind != ev.RETRAIN_PROGRESS:
            out.append(progress_chart(curve, f"{p.get('trigger_id')}: training loss per epoch"))
    elif e.kind == ev.MODEL_PROMOTED:
        gate = p.get("gate")
        out.append(
            _kv(
                [
                    ("champion now", _e(e.model_version)),
                    ("previous champion", _e(p.get("previous_champion"))),
                    ("reason", _e(p.get("reason"))),
                    ("trigger", _e(p.get("trigger_id"))),
                ]
            )
        )
        if isinstance(gate, dict):
            out.append(
                gate_table(
                    {**gate, "candidate": e.model_version, "champion": p.get("previous_champion")}
                )
            )
    elif e.kind == ev.MODEL_ROLLED_BACK:
        evidence = p.get("evidence")
        out.append(
            _kv(
                [
                    ("from", _e(p.get("from"))),
                    ("to", _e(p.get("to"))),
                    ("reason", _e(p.get("reason"))),
                    (
                        "evidence",
                        _e(evidence.get("summary")) if isinstance(evidence, dict) else None,
                    ),
                ]
            )
        )
    raw = escape(json.dumps(e.to_dict(), indent=2, sort_keys=True))
    out.append(f'<details class="raw"><summary>raw event</summary><pre>{raw}</pre></details>')
    return "".join(out)


def _summary(e: Event) -> str:
    if e.kind in (ev.GATE_PASSED, ev.GATE_FAILED):
        return gate_headline(e.payload)[1]
    return event_summary(e)


def _log(r: Review, href: Callable[[str], str]) -> str:
    progress: dict[str, list[tuple[int, float, float | None]]] = {}
    for e in r.events:
        if e.kind == ev.RETRAIN_PROGRESS:
            progress.setdefault(str(e.payload.get("trigger_id")), []).append(
                (
                    int(e.payload.get("epoch", 0)),
                    float(e.payload.get("loss", 0.0)),
                    e.payload.get("val_accuracy"),
                )
            )
    counts: dict[str, int] = {}
    for e in r.events:
        counts[e.kind] = counts.get(e.kind, 0) + 1
    boxes = "".join(
        f'<label><input type="checkbox" value="{_e(k)}" '
        f'data-default="{0 if k in HIDDEN_BY_DEFAULT else 1}"'
        f"{'' if k in HIDDEN_BY_DEFAULT else ' checked'}> {_e(k)} ({n})</label>"
        for k, n in sorted(counts.items())
    )
    filters = (
        '<div class="filters"><fieldset id="kinds"><legend>kinds</legend>'
        f'{boxes}</fieldset><label>from <input type="datetime-local" id="since" step="1"></label>'
        '<label>to <input type="datetime-local" id="until" step="1"></label> (UTC)'
        '<input type="search" id="q" placeholder="search text" aria-label="search">'
        '<button type="button" id="all-kinds">all kinds</button>'
        '<button type="button" id="reset">reset</button><span id="count"></span></div>'
    )
    items = []
    for e in r.events:
        tone = KIND_TONE.get(e.kind, "")
        items.append(
            f'<details class="ev" id="ev-{e.id}" data-kind="{_e(e.kind)}" data-ts="{_e(e.ts)}"'
            f"{' hidden' if e.kind in HIDDEN_BY_DEFAULT else ''}><summary>"
            f'<span class="id">#{e.id}</span><time datetime="{_e(e.ts)}">'
            f"{_e(e.ts[:19].replace('T', ' '))}</time>"
            f'<span><span class="badge {tone}">{_e(e.kind)}</span></span>'
            f"<span>{_e(e.model_version or '')}</span>"
            f'<span class="sum">{_e(_summary(e))}</span></summary>'
            f'<div class="body">{_detail(e, r, href, progress)}</div></details>'
        )
    more = ""
    if r.total_events > len(r.events):
        more = (
            f'<p class="note">Showing the newest {len(r.events):,} of {r.total_events:,} '
            "events (the story above is told from all of them).</p>"
        )
    return filters + more + f'<div class="log">{"".join(items)}</div>'


# -- the page ----------------------------------------------------------------------------
def render(review: Review, *, report_href: Callable[[str], str], live: Live | None = None) -> str:
    """The whole HTML document."""
    r, st = review, review.status
    nonce = f' nonce="{_e(live.nonce)}"' if live and live.nonce else ""
    csp = (
        ""
        if live
        else (
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
        )
    )
    auth = ""
    if live:
        auth = (
            '<form id="auth" autocomplete="off"><input id="token" type="password" '
            'placeholder="operator token (for actions)" aria-label="operator token">'
            '<button type="submit">Unlock actions</button>'
            '<span class="msg">read-only</span></form>'
        )
    mode = "live" if live else "static"
    data = f' data-api="{_e(live.api_base)}" data-ui="{_e(live.ui_base)}"' if live else ""
    sub = (
        f"champion <b>{_e(r.champion or 'none yet')}</b> · {len(r.versions)} versions · "
        f"{_n(st.get('rows'))} rows ({_n(st.get('labelled_rows'))} labelled, "
        f"{_n(st.get('quarantined_rows'))} quarantined) · {r.total_events:,} events · "
        f"daemon {'running' if st.get('daemon_running') else 'not running'}"
    )
    where = f"state {_e(r.state_dir)} · generated {_e(r.generated_at[:19].replace('T', ' '))} UTC"
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{csp}<title>driftloop review — champion {_e(r.champion)}</title>"
        f"<style{nonce}>{CSS}</style></head>"
        f'<body data-mode="{mode}"{data}><header><h1>driftloop review</h1>'
        f'<p class="sub">{sub}</p><p class="sub">{where}</p>{auth}</header>'
        '<nav><a href="#story">What happened</a><a href="#models">Models</a>'
        '<a href="#detectors">Detectors</a><a href="#forgetting">Forgetting</a>'
        '<a href="#log">Event log</a></nav><main>'
        '<section id="story"><h2>What happened</h2><p class="lead">Each decision in plain '
        "words, oldest first: what the detectors saw, what was retrained, and why the gate "
        "promoted or refused the candidate.</p>"
        f"{_story(r)}</section>"
        f'<section id="models"><h2>Models</h2>{_models(r, live is not None)}</section>'
        '<section id="detectors"><h2>Detectors over time</h2>'
        f"{_detectors(r)}</section>"
        '<section id="forgetting"><h2>Forgetting matrix</h2>'
        f"{_matrix(r)}</section>"
        '<section id="log"><h2>Event log</h2><p class="lead">Filter by kind, time or text; '
        "click an event for its details (retrain progress is hidden by default).</p>"
        f"{_log(r, report_href)}</section></main>"
        f'<div id="toast" role="status"></div><script{nonce}>{JS}</script></body></html>\n'
    )
