"""The review page's event log: filters, one expandable row per event, its details."""

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


def _detail(
    e: Event,
    r: Review,
    href: Callable[[str], str],
    progress: dict[str, list[tuple[int, float, float | None]]],
    fate: dict[str, bool],
) -> str:
    p = e.raw
    out = []
    if e.kind == ev.DRIFT_DETECTED:
        d = p.get("details") or {}
        win = p.get("window")
        out.append(
            kv(
                [
                    ("detector", esc(p.get("detector"))),
                    ("signal", esc(p.get("signal"))),
                    ("alarm at row", num(p.get("row"))),
                    ("change began near row", num(p.get("onset"))),
                    (
                        "window",
                        f"rows {num(win[0])}..{num(win[1])}"
                        if isinstance(win, list) and win
                        else None,
                    ),
                    ("statistic", num(p.get("statistic"))),
                    ("threshold", num(p.get("threshold"))),
                    (
                        "mean before → after",
                        f"{num(d.get('mean_before'))} → {num(d.get('mean_after'))}"
                        if d.get("mean_after") is not None
                        else None,
                    ),
                    ("decision", f"<b>{esc(p.get('action'))}</b>: {esc(p.get('reason'))}"),
                ]
            )
        )
        if e.id in r.reports:
            out.append(
                f'<p><a href="{esc(href(r.reports[e.id]))}">Open the drift report '
                f"({esc(r.reports[e.id])})</a></p>"
            )
        if isinstance(d.get("features"), list):
            out.append(feature_table(d))
    elif e.kind in (ev.GATE_PASSED, ev.GATE_FAILED):
        tone, head = gate_headline(p, **fate)
        out.append(
            f'<p><span class="badge {tone}">{esc(p.get("next") or tone)}</span> '
            f"<b>{esc(head)}</b></p>"
        )
        out.append(gate_table(p))
        out.append(
            kv(
                [
                    ("mode", esc(p.get("mode"))),
                    ("stage", esc(p.get("stage"))),
                    ("confidence", num(p.get("confidence"), 2)),
                    ("test", esc(p.get("test"))),
                    ("trigger", esc(p.get("trigger_id"))),
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
        out.append(kv((k, num(p[k])) for k in keys if k in p))
        curve = progress.get(str(p.get("trigger_id")), [])
        if curve and e.kind != ev.RETRAIN_PROGRESS:
            out.append(progress_chart(curve, f"{p.get('trigger_id')}: training loss per epoch"))
    elif e.kind == ev.MODEL_PROMOTED:
        gate = p.get("gate")
        out.append(
            kv(
                [
                    ("champion now", esc(e.model_version)),
                    ("previous champion", esc(p.get("previous_champion"))),
                    ("reason", esc(p.get("reason"))),
                    ("trigger", esc(p.get("trigger_id"))),
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
            kv(
                [
                    ("from", esc(p.get("from"))),
                    ("to", esc(p.get("to"))),
                    ("reason", esc(p.get("reason"))),
                    (
                        "evidence",
                        esc(evidence.get("summary")) if isinstance(evidence, dict) else None,
                    ),
                ]
            )
        )
    raw = escape(json.dumps(e.to_dict(), indent=2, sort_keys=True))
    out.append(f'<details class="raw"><summary>raw event</summary><pre>{raw}</pre></details>')
    return "".join(out)


def _fates(r: Review) -> dict[int, dict[str, bool]]:
    """What became of each candidate that passed its gate to wait for a person, by the
    id of that ``gate.passed``, told by the events after it (newer, so on the page
    whenever it is): approved (promoted), rejected, or no longer approvable
    (``r.stale``). Without it, the row kept saying the candidate 'awaits a person's
    approval' after it was decided or its evidence went stale."""
    promoted: dict[str, int] = {}  # version -> id of its last promotion
    rejected: dict[str, int] = {}  # candidate -> id of its last rejection
    for x in r.events:
        if x.kind == ev.MODEL_PROMOTED and x.model_version is not None:
            promoted[x.model_version] = x.id
        elif x.kind == ev.GATE_FAILED and x.raw.get("rejected_by"):
            rejected[str(x.raw.get("candidate"))] = x.id
    out = {}
    for e in r.events:
        if e.kind != ev.GATE_PASSED or e.raw.get("next") != "await approval":
            continue
        cand = str(e.raw.get("candidate"))
        was_approved = promoted.get(cand, 0) > e.id
        was_rejected = not was_approved and rejected.get(cand, 0) > e.id
        out[e.id] = {
            "approved": was_approved,
            "rejected": was_rejected,
            "stale": not (was_approved or was_rejected) and cand in r.stale,
        }
    return out


def _summary(e: Event, fate: dict[str, bool]) -> str:
    if e.kind in (ev.GATE_PASSED, ev.GATE_FAILED):
        return gate_headline(e.raw, **fate)[1]
    return event_summary(e)


def event_log(r: Review, href: Callable[[str], str]) -> str:
    progress: dict[str, list[tuple[int, float, float | None]]] = {}
    for e in r.events:
        if e.kind == ev.RETRAIN_PROGRESS:
            progress.setdefault(str(e.raw.get("trigger_id")), []).append(
                (
                    int(e.raw.get("epoch", 0)),
                    float(e.raw.get("loss", 0.0)),
                    e.raw.get("val_accuracy"),
                )
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
