"""The review page's event log: filters, one expandable row per event, its details.

The row's line is :func:`runtime.review.text.event_summary` (a gate's, its headline from
the story); the details are one function per kind, reading that kind's payload fields.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from html import escape

from runtime.review.collect import Review
from runtime.review.page_html import esc, feature_table, gate_table, kv, num, progress_chart
from runtime.review.story import gate_headline
from runtime.review.text import event_summary
from runtime.store import events as ev
from runtime.store.events import Event

__all__ = ["event_log"]

HIDDEN_BY_DEFAULT = frozenset({ev.RETRAIN_PROGRESS})
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


Curves = dict[str, list[tuple[int, float, float | None]]]


def _at(row: int | None, r: Review) -> str:
    """A row number, with its event time where rows carry one."""
    t = r.row_times.get(row) if row is not None else None
    return num(row) if t is None else f"{num(row)} (data time {esc(t)})"


def _drift_detail(e: Event, p: ev.DriftDetected, r: Review, href: Callable[[str], str]) -> str:
    d = p.details or {}
    win = p.window
    out = [
        kv(
            [
                ("detector", esc(p.detector)),
                ("signal", esc(p.signal)),
                ("alarm at row", _at(p.row, r)),
                ("change began near row", _at(p.onset, r)),
                ("window", f"rows {num(win[0])}..{num(win[1])}" if win else None),
                ("statistic", num(p.statistic)),
                ("threshold", num(p.threshold)),
                (
                    "mean before → after",
                    f"{num(d.get('mean_before'))} → {num(d.get('mean_after'))}"
                    if d.get("mean_after") is not None
                    else None,
                ),
                ("decision", f"<b>{esc(p.action)}</b>: {esc(p.reason)}"),
            ]
        )
    ]
    if e.id in r.reports:
        out.append(
            f'<p><a href="{esc(href(r.reports[e.id]))}">Open the drift report '
            f"({esc(r.reports[e.id])})</a></p>"
        )
    if isinstance(d.get("features"), list):
        out.append(feature_table(d))
    return "".join(out)


def _gate_detail(p: ev.Gate, fate: dict[str, bool]) -> str:
    tone, head = gate_headline(p, **fate)
    facts = [
        ("mode", esc(p.mode)),
        ("stage", esc(p.stage)),
        ("confidence", num(p.confidence, 2)),
        ("test", esc(p.test)),
        ("trigger", esc(p.trigger_id)),
    ]
    return (
        f'<p><span class="badge {tone}">{esc(p.next or tone)}</span> <b>{esc(head)}</b></p>'
        + gate_table(p)
        + kv(facts)
    )


def _maybe(x: object) -> str | None:
    """A value that is shown only when the event recorded one."""
    return None if x is None else num(x)


RETRAIN = (ev.RetrainRequested, ev.RetrainStarted, ev.RetrainProgress, ev.RetrainFinished,
           ev.RetrainFailed)


def _retrain_facts(p: ev.Payload) -> list[tuple[str, str | None]]:
    match p:
        case ev.RetrainRequested():
            return [("trigger_id", num(p.trigger_id)), ("trigger", num(p.kind)),
                    ("onset", num(p.onset)),
                    ("upto", num(p.upto)), ("labelled_rows", num(p.labelled_rows)),
                    ("reason", _maybe(p.reason))]
        case ev.RetrainStarted():
            return [("trigger_id", num(p.trigger_id)), ("champion", num(p.champion)),
                    ("candidate", num(p.candidate)), ("strategy", num(p.strategy)),
                    ("onset", num(p.onset)), ("upto", num(p.upto))]
        case ev.RetrainProgress():
            return [("trigger_id", num(p.trigger_id)), ("samples", num(p.samples)),
                    ("seconds", num(p.seconds)), ("epoch", num(p.epoch)), ("loss", num(p.loss))]
        case ev.RetrainFinished():
            return [("trigger_id", num(p.trigger_id)), ("candidate", num(p.candidate)),
                    ("epochs", num(p.epochs)), ("samples", num(p.samples)),
                    ("seconds", num(p.seconds)), ("final_loss", num(p.final_loss)),
                    ("stopped_by", num(p.stopped_by)), ("rows_train", num(p.rows_train)),
                    ("rows_holdout", num(p.rows_holdout))]
        case ev.RetrainFailed():
            return [("trigger_id", num(p.trigger_id)), ("seconds", _maybe(p.seconds)),
                    ("reason", num(p.reason))]
    return []


def _retrain_detail(e: Event, progress: Curves) -> str:
    p = e.payload
    out = kv(_retrain_facts(p))
    trigger = p.trigger_id if isinstance(p, RETRAIN) else None
    curve = progress.get(str(trigger), [])
    if curve and e.kind != ev.RETRAIN_PROGRESS:
        out += progress_chart(curve, f"{trigger}: training loss per epoch")
    return out


def _promoted_detail(e: Event, p: ev.ModelPromoted) -> str:
    out = kv(
        [
            ("champion now", esc(e.model_version)),
            ("previous champion", esc(p.previous_champion)),
            ("reason", esc(p.reason)),
            ("trigger", esc(p.trigger_id)),
        ]
    )
    if p.gate is not None:
        g = p.gate
        out += gate_table(ev.Gate(candidate=e.model_version or "", champion=p.previous_champion,
                                  checks=g.checks, reasons=g.reasons))
    return out


def _rolled_back_detail(p: ev.ModelRolledBack) -> str:
    evidence = p.evidence  # the watch's, when the rollback was automatic
    summary = esc(evidence.get("summary")) if isinstance(evidence, dict) else None
    return kv([("from", esc(p.from_)), ("to", esc(p.to)), ("reason", esc(p.reason)),
               ("evidence", summary)])


def _detail(
    e: Event, r: Review, href: Callable[[str], str], progress: Curves, fate: dict[str, bool]
) -> str:
    """An event's details: its facts as a list, charts and tables where it has them,
    and the raw event."""
    p = e.payload
    out = ""
    if isinstance(p, ev.DriftDetected):
        out = _drift_detail(e, p, r, href)
    elif isinstance(p, ev.Gate):
        out = _gate_detail(p, fate)
    elif e.kind.startswith("retrain."):
        out = _retrain_detail(e, progress)
    elif isinstance(p, ev.ModelPromoted):
        out = _promoted_detail(e, p)
    elif isinstance(p, ev.ModelRolledBack):
        out = _rolled_back_detail(p)
    raw = escape(json.dumps(e.to_dict(), indent=2, sort_keys=True))
    return out + f'<details class="raw"><summary>raw event</summary><pre>{raw}</pre></details>'


def _fates(r: Review) -> dict[int, dict[str, bool]]:
    """What became of each candidate that passed its gate to wait for a person, by the
    id of that ``gate.passed``, told by the events after it (newer, so on the page
    whenever it is): approved (promoted), rejected, or no longer approvable
    (``r.stale``), so that a decided or stale candidate's row does not say it awaits
    a person's approval."""
    promoted: dict[str, int] = {}  # version -> id of its last promotion
    rejected: dict[str, int] = {}  # candidate -> id of its last rejection
    for x in r.events:
        if x.kind == ev.MODEL_PROMOTED and x.model_version is not None:
            promoted[x.model_version] = x.id
        elif isinstance(x.payload, ev.Gate) and x.kind == ev.GATE_FAILED and x.payload.rejected_by:
            rejected[x.payload.candidate] = x.id
    out = {}
    for e in r.events:
        p = e.payload
        if e.kind != ev.GATE_PASSED or not isinstance(p, ev.Gate) or p.next != "await approval":
            continue
        cand = p.candidate
        was_approved = promoted.get(cand, 0) > e.id
        was_rejected = not was_approved and rejected.get(cand, 0) > e.id
        out[e.id] = {
            "approved": was_approved,
            "rejected": was_rejected,
            "stale": not (was_approved or was_rejected) and cand in r.stale,
        }
    return out


def _summary(e: Event, fate: dict[str, bool]) -> str:
    if isinstance(e.payload, ev.Gate):
        return gate_headline(e.payload, **fate)[1]
    return event_summary(e)


def event_log(r: Review, href: Callable[[str], str]) -> str:
    progress: Curves = {}
    for e in r.events:
        if isinstance(e.payload, ev.RetrainProgress):
            p = e.payload
            progress.setdefault(p.trigger_id, []).append(
                (int(p.epoch), float(p.loss), p.val_accuracy)
            )
    counts: dict[str, int] = {}
    for e in r.events:
        counts[e.kind] = counts.get(e.kind, 0) + 1
    boxes = "".join(
        f'<label><input type="checkbox" value="{esc(k)}" '
        f'data-default="{0 if k in HIDDEN_BY_DEFAULT else 1}"'
        f"{'' if k in HIDDEN_BY_DEFAULT else ' checked'}> {esc(k)} ({n})</label>"
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
    fates = _fates(r)
    for e in r.events:
        tone = KIND_TONE.get(e.kind, "")
        fate = fates.get(e.id, {})
        items.append(
            f'<details class="ev" id="ev-{e.id}" data-kind="{esc(e.kind)}" data-ts="{esc(e.ts)}"'
            f"{' hidden' if e.kind in HIDDEN_BY_DEFAULT else ''}><summary>"
            f'<span class="id">#{e.id}</span><time datetime="{esc(e.ts)}">'
            f"{esc(e.ts[:19].replace('T', ' '))}</time>"
            f'<span><span class="badge {tone}">{esc(e.kind)}</span></span>'
            f"<span>{esc(e.model_version or '')}</span>"
            f'<span class="sum">{esc(_summary(e, fate))}</span></summary>'
            f'<div class="body">{_detail(e, r, href, progress, fate)}</div></details>'
        )
    more = ""
    if r.total_events > len(r.events):
        more = (
            f'<p class="note">Showing the newest {len(r.events):,} of {r.total_events:,} '
            "events (the story above is told from all of them).</p>"
        )
    return filters + more + f'<div class="log">{"".join(items)}</div>'
