"""The review page: a :class:`~runtime.review.collect.Review` rendered as one HTML document.

Everything is inline (CSS, script, SVG charts); nothing is fetched, so the file opens
with no network. Every value from the state is escaped. The served page
(``live=``) adds the operator's token box and the approve/reject/rollback buttons, which
call the API's POST endpoints; without a valid token they stay hidden and the API
refuses them anyway.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from runtime.monitoring.trace import Point
from runtime.review.charts import Band, Mark, line_chart
from runtime.review.collect import Review
from runtime.review.page_assets import CSS, JS
from runtime.review.page_estimated import estimated_section
from runtime.review.page_html import esc, evlink, gate_table, num, progress_chart, table
from runtime.review.page_log import event_log
from runtime.review.page_realized import realized_section
from runtime.review.story import Chapter
from runtime.store import events as ev
from runtime.store.events import Event
from runtime.store.served import Realized
from runtime.store.versions import ModelVersion

__all__ = ["Live", "render", "write_report"]

Alarm = tuple[Event, ev.DriftDetected]
TAGS = {"good": "promoted", "bad": "refused", "warn": "attention", "info": "info"}


@dataclass(frozen=True)
class Live:
    """Settings of the served page: where the API and the UI routes are, and the CSP nonce."""

    api_base: str = ""
    ui_base: str = "/ui"
    nonce: str = ""


# -- the story ---------------------------------------------------------------------------
def _chapter(ch: Chapter) -> str:
    ids = " ".join(evlink(i) for i in ch.events[:12])
    lines = "".join(f"<li>{esc(line)}</li>" for line in ch.lines)
    extra = ""
    if ch.gate is not None or ch.progress:
        gate = (
            (
                f"<h4>Gate: {esc(ch.gate.candidate)} vs {esc(ch.gate.champion)}"
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
        f'<li class="ch {ch.tone}" data-kind="{esc(ch.kind)}"><div class="hl">'
        f'<span class="tag">{esc(tag)}</span>{esc(ch.headline)}</div>'
        f'<div class="meta">{esc(ch.ts[:19].replace("T", " "))} UTC · events {ids}</div>'
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
        if version in r.stale:  # the API would refuse the approval: offer Reject, say why
            out.append(f'<span class="act note">Cannot approve: {esc(r.stale[version])}.</span>')
        else:
            out.append(
                f'<button class="act primary" data-verb="approve" data-version="{esc(version)}">'
                "Approve</button>"
            )
        out.append(
            f'<button class="act danger" data-verb="reject" data-version="{esc(version)}">'
            "Reject</button>"
        )
    if version in r.rollback_targets:
        out.append(
            f'<button class="act" data-verb="rollback" data-version="{esc(version)}">'
            f"Roll back to {esc(version)}</button>"
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
            parent = f'<span class="arrow">· from {esc(v.parent)} →</span> '
        else:
            parent = '<span class="arrow">·</span> ' if i else ""
        nodes.append(
            f'{parent}<span class="node {esc(v.status)}"><b>{esc(v.version)}</b> '
            f'<span class="badge {esc(v.status)}">{esc(v.status)}</span></span>'
        )
    lineage = f'<div class="lineage">{"".join(nodes)}</div>'
    served = dict(r.realized.by_version)
    rows = []
    for v in r.versions:
        cells = _version_cells(r, v, served.get(v.version))
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
        "realized on served rows",
        "created (UTC)",
    ]
    if live:
        head.append('<span class="act">actions</span>')
    cap = (
        '<p class="cap">Each version is the whole unit (weights, rehearsal buffer, reference '
        "window, golden sets). Accuracies are measured when the version was gated: on the "
        "held-out part of its new data and on every earlier golden set, champion first; "
        "realized: its served predictions scored against the labels that came.</p>"
    )
    return lineage + cap + table(head, rows)


def _version_cells(r: Review, v: ModelVersion, live_acc: Realized | None) -> list[str]:
    """One row of the models table: what the version is, what it was trained on, how it
    scored when gated and what its served predictions realized."""
    m, d = v.meta.get("metrics", {}), v.meta.get("data", {})
    hold = m.get("holdout")
    if isinstance(hold, list) and len(hold) >= 2:
        n = num(hold[2]) if len(hold) > 2 else "?"
        new = f"{num(hold[0])} → <b>{num(hold[1])}</b> ({n} rows)"
    elif m.get("val_accuracy") is not None:
        new = f"validation {num(m.get('val_accuracy'))}"
    elif m.get("val_mae") is not None:
        new = f"validation MAE {num(m.get('val_mae'))}"
    else:
        new = "–"
    gold = m.get("golden")
    golden = (
        "; ".join(
            f"{esc(k)}: {num(x[0])} → {num(x[1])}"
            for k, x in gold.items()
            if isinstance(x, list) and len(x) >= 2
        )
        if isinstance(gold, dict)
        else (f"{num(m.get('golden_accuracy'))}" if m.get("golden_accuracy") is not None
              else f"MAE {num(m.get('golden_mae'))}" if m.get("golden_mae") is not None else "–")
    )
    span = (
        f"{num(d.get('first_row'))}..{num(d.get('last_row'))} ({num(d.get('rows'))})"
        if d
        else "–"
    )
    realized = (
        f"{num(live_acc.value)} ({num(live_acc.rows)} rows)"
        if live_acc is not None and live_acc.rows
        else "–"
    )
    star = " ★" if v.version == r.champion else ""
    return [
        f"<b>{esc(v.version)}</b>{star}",
        f'<span class="badge {esc(v.status)}">{esc(v.status)}</span>',
        esc(v.parent or "–"),
        esc(v.meta.get("strategy", "–")),
        esc(v.meta.get("trigger_id", "–")),
        span,
        new,
        golden,
        realized,
        esc(v.created_at[:19].replace("T", " ")),
    ]


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
    name: str, signal: str, points: list[Point], alarms: list[Alarm], r: Review
) -> str:
    marks = [Mark(row, f"data: {seg}", "mark") for row, seg in r.segments]
    marks += [Mark(float(a.row), f"#{e.id} {a.action}") for e, a in alarms]
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
            f"{esc(name)} watches the champion's {esc(label)} on labelled rows; the line is "
            "its mean per batch"
        )
    else:
        if not stats:
            stats = [
                (float(a.row), float(a.statistic))
                for _, a in alarms
                if isinstance(a.statistic, int | float)
            ]
        series = [(x, y) for x, y in stats]
        dots = len(series) == len([a for _, a in alarms if a.statistic is not None])
        positive = all(0 < y <= 1 for _, y in series)
        log_y = bool(series) and positive and threshold is not None and threshold <= 0.2
        label = "smallest adjusted p-value" if log_y else "statistic"
        title, thr = f"{name} on {signal}: {label}", threshold
        how = (
            f"{esc(name)} compares a window of recent rows with its reference; drift when the "
            "p-value falls below the threshold"
            if log_y
            else f"{esc(name)}'s statistic"
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
    alarms: dict[str, list[Alarm]] = {}
    for e in r.events:
        if isinstance(e.payload, ev.DriftDetected):
            alarms.setdefault(e.payload.detector, []).append((e, e.payload))
    names = list(r.traces) + [n for n in alarms if n not in r.traces]
    parts = []
    for name in names:
        signal, points = r.traces.get(name, ("", []))
        if not signal and alarms.get(name):
            signal = alarms[name][0][1].signal
        parts.append(_detector_chart(name, signal, points, alarms.get(name, []), r))
    body = "".join(p for p in parts if p)
    return body or '<p class="note">No detector statistics recorded yet.</p>'


# -- forgetting matrix -------------------------------------------------------------------
def _matrix(r: Review) -> str:
    mat = r.matrix
    if mat is None:
        return f'<p class="note">{esc(r.matrix_note)}</p>'
    parents = {v.version: v.parent for v in r.versions}
    by_version = {v: accs for v, _, accs in mat.rows}
    rows = []
    for version, status, accs in mat.rows:
        cells = [
            f"<b>{esc(version)}</b>{' ★' if version == r.champion else ''}",
            f'<span class="badge {esc(status)}">{esc(status)}</span>',
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
    th = "".join(f'<th class="num">{esc(n)}</th>' for n in mat.distributions)
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


# -- the page ----------------------------------------------------------------------------
def render(review: Review, *, report_href: Callable[[str], str], live: Live | None = None) -> str:
    """The whole HTML document."""
    r, st = review, review.status
    estimated = estimated_section(r.estimated, r.realized.series, st.get("estimated_accuracy"),
                                  st.get("estimated_mae"))
    nonce = f' nonce="{esc(live.nonce)}"' if live and live.nonce else ""
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
    data = f' data-api="{esc(live.api_base)}" data-ui="{esc(live.ui_base)}"' if live else ""
    sub = (
        f"champion <b>{esc(r.champion or 'none yet')}</b> · {len(r.versions)} versions · "
        f"{num(st.get('rows'))} rows ({num(st.get('labelled_rows'))} labelled, "
        f"{num(st.get('quarantined_rows'))} quarantined) · {r.total_events:,} events · "
        f"daemon {'running' if st.get('daemon_running') else 'not running'}"
    )
    where = f"state {esc(r.state_dir)} · generated {esc(r.generated_at[:19].replace('T', ' '))} UTC"
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{csp}<title>driftloop review — champion {esc(r.champion)}</title>"
        f"<style{nonce}>{CSS}</style></head>"
        f'<body data-mode="{mode}"{data}><header><h1>driftloop review</h1>'
        f'<p class="sub">{sub}</p><p class="sub">{where}</p>{auth}</header>'
        '<nav><a href="#story">What happened</a><a href="#models">Models</a>'
        f'<a href="#realized">Live {r.realized.label}</a>'
        '<a href="#detectors">Detectors</a><a href="#forgetting">Forgetting</a>'
        '<a href="#log">Event log</a></nav><main>'
        '<section id="story"><h2>What happened</h2><p class="lead">Each decision in plain '
        "words, oldest first: what the detectors saw, what was retrained, and why the gate "
        "promoted or refused the candidate.</p>"
        f"{_story(r)}</section>"
        f'<section id="models"><h2>Models</h2>{_models(r, live is not None)}</section>'
        f'<section id="realized"><h2>Live {r.realized.label}</h2><p class="lead">How right '
        "the served predictions were once their labels came, over the stream.</p>"
        f"{realized_section(r.realized, r.events)}"
        f"{estimated}"
        "</section>"
        '<section id="detectors"><h2>Detectors over time</h2>'
        f"{_detectors(r)}</section>"
        '<section id="forgetting"><h2>Forgetting matrix</h2>'
        f"{_matrix(r)}</section>"
        '<section id="log"><h2>Event log</h2><p class="lead">Filter by kind, time or text; '
        "click an event for its details (retrain progress is hidden by default).</p>"
        f"{event_log(r, report_href)}</section></main>"
        f'<div id="toast" role="status"></div><script{nonce}>{JS}</script></body></html>\n'
    )


def write_report(review: Review, out: Path) -> Path:
    """Write the review as one self-contained HTML file at ``out`` (atomically).

    Links to drift reports point to their files under ``<state_dir>/reports/``, relative
    to ``out``'s folder when they share a file system root.
    """
    out = Path(out).resolve()
    reports = Path(review.state_dir).resolve() / "reports"

    def href(name: str) -> str:
        target = reports / name
        try:
            return Path(os.path.relpath(target, out.parent)).as_posix()
        except ValueError:  # another drive
            return target.as_uri()

    html = render(review, report_href=href)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, out)
    return out
