"""The event log told as decisions, in plain words, for someone who was not there.

:func:`story` turns events into :class:`Chapter` s: the bootstrap, each retrain from the
drift that caused it to the gate's verdict and what became of the candidate, runs of
alerts that caused no retrain, and rollbacks. Each chapter has a one-line headline such
as ``"v3 refused: it did not beat v2 on the new data (0.573 vs 0.605, needed +0.02)"``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.store import events as ev
from runtime.store.events import Event

__all__ = ["Chapter", "check_phrase", "drift_sentence", "gate_headline", "story"]

GOOD, BAD, WARN, INFO = "good", "bad", "warn", "info"


@dataclass(frozen=True)
class Chapter:
    """One decision or episode of the story.

    ``tone`` is ``good`` (a promotion), ``bad`` (a refusal, a failure, a rollback),
    ``warn`` (alerts, waiting for a person) or ``info``; ``events`` are the ids of the
    events it tells (the first is where it starts); ``gate`` is the last gate payload and
    ``progress`` the retrain's ``(epoch, loss, val_accuracy)`` points, if any.
    """

    kind: str
    tone: str
    headline: str
    ts: str
    lines: tuple[str, ...] = ()
    events: tuple[int, ...] = ()
    version: str | None = None
    gate: dict[str, Any] | None = None
    progress: tuple[tuple[int, float, float | None], ...] = field(default=())


def _f(x: Any, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if isinstance(x, int | float) else "?"


def _num(text: str, pattern: str) -> float | None:
    m = re.search(pattern, text)
    return float(m.group(1)) if m else None


def _pct(x: Any) -> str:
    return f"{100 * x:.1f}%" if isinstance(x, int | float) else "?"


# -- drift ------------------------------------------------------------------------------
def drift_sentence(p: dict[str, Any]) -> str:
    """What a detector saw, in words (without the row or the action)."""
    d = p.get("details") or {}
    signal = str(p.get("signal"))
    before, after = d.get("mean_before"), d.get("mean_after")
    if isinstance(before, int | float) and isinstance(after, int | float):
        verb = "rose" if after > before else "fell"
        if signal == "error":
            return f"the error rate {verb} from {_pct(before)} to {_pct(after)}"
        return f"the mean {signal} {verb} from {before:.3g} to {after:.3g}"
    table = d.get("features")
    if isinstance(table, list) and table:
        flagged = [r for r in table if r.get("drifted")]
        flagged.sort(key=lambda r: r.get("p_adjusted") if r.get("p_adjusted") is not None else 1)
        parts = []
        for r in flagged[:3]:
            shift = ""
            if isinstance(r.get("ref_mean"), int | float) and isinstance(
                r.get("cur_mean"), int | float
            ):
                shift = f"mean {r['ref_mean']:.4g} → {r['cur_mean']:.4g}"
            pv = r.get("p_adjusted")
            pval = f"p = {pv:.2g}" if isinstance(pv, int | float) else ""
            inner = ", ".join(x for x in (shift, pval) if x)
            parts.append(f"{r.get('feature')} ({inner})" if inner else str(r.get("feature")))
        more = f" and {len(flagged) - 3} more" if len(flagged) > 3 else ""
        if parts:
            return f"the input distribution changed: {', '.join(parts)}{more}"
    stat, thr = p.get("statistic"), p.get("threshold")
    vs = f" (threshold {thr:.3g})" if isinstance(thr, int | float) else ""
    return f"{signal} drifted: statistic {_f(stat)}{vs}"


def _drift_line(e: Event) -> str:
    p = e.raw
    onset = f", change began near row {p['onset']}" if p.get("onset") is not None else ""
    return f"Row {p.get('row')}, {p.get('detector')}: {drift_sentence(p)}{onset}."


# -- gate -------------------------------------------------------------------------------
def _where(name: str, champion: str | None) -> str:
    base, _, sub = name.partition("/")
    if base == "new_data":
        where = "on the new data"
    elif base.startswith("golden:"):
        where = f"on {base[7:]}'s golden set"
    else:
        where = f"on {base}"
    if sub:
        key, _, val = sub.partition("=")
        where += f" ({key} {val})"
    return where


def check_phrase(c: dict[str, Any], champion: str | None, confidence: Any = 0.95) -> str:
    """One gate check in words, e.g. ``"it did not beat v2 on the new data (0.573 vs
    0.605, needed +0.02 or ≥ 0.90)"``."""
    thr = str(c.get("threshold", ""))
    metric = "" if c.get("metric") == "accuracy" else f"{c.get('metric')} "
    where = _where(str(c.get("name", "")), champion)
    cand, champ = c.get("candidate"), c.get("champion")
    nums = c.get("numbers") or {}
    gain = _num(thr, r"gain >= (-?[\d.]+(?:e-?\d+)?)")
    floor = _num(thr, r"candidate >= (-?[\d.]+(?:e-?\d+)?)")
    loss = _num(thr, r"loss <= (-?[\d.]+(?:e-?\d+)?)")
    unit = " relative" if "relative" in thr else ""
    conf = f"{100 * confidence:.0f}%" if isinstance(confidence, float) else "95%"
    vs = f"{metric}{_f(cand)} vs {_f(champ)}"
    passed = bool(c.get("passed"))
    if cand is None or (champ is None and floor is None):
        return str(c.get("reason") or c.get("name"))
    if gain is not None or floor is not None:
        need = " or ".join(
            x
            for x in (
                f"+{gain:g}{unit}" if gain is not None else "",
                f"≥ {floor:g}" if floor is not None else "",
            )
            if x
        )
        if not passed:
            if gain is not None and cand - champ >= gain - 1e-9:
                return (
                    f"its gain over {champion} {where} was too uncertain to count ({vs}, "
                    f"needed {need} at {conf} confidence)"
                )
            if cand > champ:
                return f"it did not beat {champion} by enough {where} ({vs}, needed {need})"
            return f"it did not beat {champion} {where} ({vs}, needed {need})"
        lower = nums.get("gain_lower")
        if gain is not None and isinstance(lower, int | float) and lower >= gain - 1e-9:
            return f"it beat {champion} {where} ({vs}, needed {need})"
        return f"it reached the {floor:g} floor {where} ({vs}, needed {need})"
    if loss is not None:
        if passed:
            return f"it held up {where} ({vs}, allowed −{loss:g}{unit})"
        upper = nums.get("loss_upper")
        up = f", may have lost up to {upper:.3f}" if isinstance(upper, int | float) else ""
        return f"it forgot too much {where} ({vs}, allowed −{loss:g}{unit}{up})"
    state = "met" if passed else "did not meet"
    return f"it {state} {thr} {where} ({vs})"


def gate_headline(
    p: dict[str, Any], approved: bool = False, stale: bool = False, rejected: bool = False
) -> tuple[str, str]:
    """``(tone, headline)`` of a ``gate.passed``/``gate.failed`` payload; ``approved``: a
    candidate that waited for a person has been promoted since; ``rejected``: a person has
    rejected it since; ``stale``: one that waits but can no longer be approved (the
    champion changed since its gate)."""
    cand, champ = p.get("candidate"), p.get("champion")
    checks = [c for c in p.get("checks", []) if isinstance(c, dict)]
    reasons = [str(r) for r in p.get("reasons", [])]
    conf = p.get("confidence", 0.95)
    if who := p.get("rejected_by"):
        # review.reject records the reason as "Rejected by <who>: <why>."; say who once
        why = " ".join(r.removeprefix(f"Rejected by {who}: ") for r in reasons)
        return BAD, f"{cand} rejected by {who}: {why or 'no reason given.'}"
    if not p.get("passed"):
        failed = [check_phrase(c, champ, conf) for c in checks if not c.get("passed")]
        why = "; ".join(failed[:2]) + (f"; and {len(failed) - 2} more" if len(failed) > 2 else "")
        return BAD, f"{cand} refused: {why or ' '.join(reasons) or 'no reason recorded'}"
    nxt = p.get("next")
    if nxt == "await approval" and approved:
        verb, tone = f"{cand} passed the gate and was approved", GOOD
    elif nxt == "await approval" and rejected:
        verb, tone = f"{cand} passed the gate and was then rejected by a person", BAD
    elif nxt == "await approval" and stale:
        verb, tone = f"{cand} passed the gate but cannot be approved (its evidence is stale)", WARN
    elif nxt == "await approval":
        verb, tone = f"{cand} passed the gate and awaits a person's approval", WARN
    elif nxt == "shadow":
        verb, tone = f"{cand} passed the gate and is scored in shadow next to {champ}", WARN
    else:
        after = " after its shadow run" if p.get("stage") == "shadow" else ""
        verb, tone = f"{cand} promoted{after}", GOOD
    main = [check_phrase(c, champ) for c in checks if not str(c.get("name")).startswith("golden")]
    kept = [c for c in checks if str(c.get("name")).startswith("golden")]
    if kept:
        worst = min(kept, key=lambda c: c.get("numbers", {}).get("gain") or 0.0)
        if len(kept) == 1:
            main.append(check_phrase(worst, champ))
        else:
            closest = check_phrase(worst, champ).removeprefix("it held up on ")
            main.append(f"it held up on all {len(kept)} earlier golden sets (closest: {closest})")
    return tone, f"{verb}: {' and '.join(main[:3])}" if main else verb


def _noisy_hint(p: dict[str, Any]) -> str | None:
    """A likely reading when both models fail on the new data but not on old data."""
    checks = {str(c.get("name")): c for c in p.get("checks", []) if isinstance(c, dict)}
    new, champ = checks.get("new_data"), p.get("champion")
    own = checks.get(f"golden:{champ}")
    if p.get("passed") or new is None or own is None:
        return None
    a_new, a_own = new.get("champion"), own.get("champion")
    if not (isinstance(a_new, float) and isinstance(a_own, float)):
        return None
    if a_new < 0.75 and a_own - a_new > 0.2 and (new.get("candidate") or 0) < a_new + 0.05:
        return (
            f"A likely reading: {champ} still scores {a_own:.3f} on its own golden set "
            f"but only {a_new:.3f} on the new rows, and retraining did not help: the new "
            "rows look inconsistent (noisy or wrong labels?) rather than a new pattern "
            "to learn."
        )
    return None


# -- chapters ---------------------------------------------------------------------------
def _retrain_chapter(
    trigger: str, evs: list[Event], by_id: dict[int, Event], stale: Mapping[str, str]
) -> Chapter:
    kinds: dict[str, list[Event]] = {}
    for e in evs:
        kinds.setdefault(e.kind, []).append(e)
    lines: list[str] = []
    ids = [e.id for e in evs if e.kind != ev.RETRAIN_PROGRESS]
    m = re.fullmatch(r"drift-(\d+)", trigger)
    cause = by_id.get(int(m.group(1))) if m else None
    if cause is not None and cause.kind == ev.DRIFT_DETECTED:
        lines.append("Why: " + _drift_line(cause))
        ids.insert(0, cause.id)
    req = kinds.get(ev.RETRAIN_REQUESTED, [])
    if req:
        rp = req[0].raw
        if cause is None:
            lines.append(
                f"Why: {rp.get('reason') or rp.get('detector') or 'requested'} (trigger {trigger})."
            )
    started = kinds.get(ev.RETRAIN_STARTED, [])
    cand = champ = None
    if started:
        sp = started[-1].raw
        cand, champ = sp.get("candidate"), sp.get("champion")
        retries = f" (attempt {len(started)})" if len(started) > 1 else ""
        lines.append(
            f"Retrained {champ} → {cand} with {sp.get('strategy')} on rows "
            f"{sp.get('onset')}..{sp.get('upto')}{retries}."
        )
    fin = kinds.get(ev.RETRAIN_FINISHED, [])
    if fin:
        f = fin[-1].raw
        by = f.get("stopped_by")
        stop = f" (stopped by its {by} budget)" if by not in (None, "epochs") else ""
        lines.append(
            f"Training: {f.get('rows_train')} rows to learn from + {f.get('rows_holdout')}"
            f" held out to judge it, {f.get('epochs')} epochs{stop}, "
            f"{_f(f.get('seconds'), 1)} s, final loss {_f(f.get('final_loss'), 4)}."
        )
    progress = tuple(
        (
            int(e.raw.get("epoch", 0)),
            float(e.raw.get("loss", 0.0)),
            e.raw.get("val_accuracy"),
        )
        for e in kinds.get(ev.RETRAIN_PROGRESS, [])
        if not started or e.id > started[-1].id
    )
    gates = kinds.get(ev.GATE_PASSED, []) + kinds.get(ev.GATE_FAILED, [])
    gates.sort(key=lambda e: e.id)
    last = evs[-1]
    if gates:
        g = gates[-1]
        promoted = kinds.get(ev.MODEL_PROMOTED, [])
        approved = any(e.id > g.id and e.model_version == g.model_version for e in promoted)
        why_stale = None if approved else stale.get(str(g.raw.get("candidate")))
        tone, head = gate_headline(g.raw, approved=approved, stale=why_stale is not None)
        hint = _noisy_hint(g.raw)
        if hint:
            lines.append(hint)
        if why_stale is not None:
            lines.append(f"Cannot approve: {why_stale}.")  # the words approve() refuses with
        if promoted:
            lines.append(
                f"Outcome: {promoted[-1].model_version} became the champion "
                f"(replacing {promoted[-1].raw.get('previous_champion')})."
            )
        elif g.kind == ev.GATE_FAILED:
            lines.append(
                f"Outcome: {g.raw.get('candidate')} was refused; "
                f"{g.raw.get('champion')} stayed the champion."
            )
        return Chapter(
            "retrain",
            tone,
            head,
            last.ts,
            tuple(lines),
            tuple(ids),
            cand,
            dict(g.raw),
            progress,
        )
    failed = kinds.get(ev.RETRAIN_FAILED, [])
    if failed and (not started or failed[-1].id > started[-1].id):
        fp = failed[-1].raw
        cancelled = bool(fp.get("cancelled"))
        head = f"Retrain {trigger} {'cancelled' if cancelled else 'failed'}: {fp.get('reason')}"
        return Chapter(
            "retrain",
            WARN if cancelled else BAD,
            head,
            last.ts,
            tuple(lines),
            tuple(ids),
            cand,
            None,
            progress,
        )
    head = (
        f"Retrain {trigger} is running: {champ} → {cand}"
        if started
        else f"Retrain {trigger} is waiting to start"
    )
    return Chapter("retrain", INFO, head, last.ts, tuple(lines), tuple(ids), cand, None, progress)


def _alerts_chapter(alerts: list[Event]) -> Chapter:
    first, last = alerts[0], alerts[-1]
    dets = sorted({str(e.raw.get("detector")) for e in alerts})
    rows = (
        f"row {first.raw.get('row')}"
        if len(alerts) == 1
        else (f"rows {first.raw.get('row')}–{last.raw.get('row')}")
    )
    times = "once" if len(alerts) == 1 else f"{len(alerts)} times"
    action = str(first.raw.get("reason") or first.raw.get("action"))
    only = (
        "alert only"
        if all(e.raw.get("action") != "retrain" for e in alerts)
        else ("no retrain started yet")
    )
    head = (
        f"{', '.join(dets)} flagged drift {times} ({rows}), {only}: {drift_sentence(first.raw)}"
    )
    lines = [_drift_line(e) for e in alerts] + [f"Policy: {action}."]
    return Chapter(
        "alert",
        WARN,
        head,
        first.ts,
        tuple(lines),
        tuple(e.id for e in alerts),
        first.model_version,
    )


def story(events: Sequence[Event], stale: Mapping[str, str] | None = None) -> list[Chapter]:
    """The chapters, in the order they began; ``stale`` maps a candidate awaiting approval
    that can no longer be approved to why (:func:`runtime.promotion.approval.approvals`)."""
    by_id = {e.id: e for e in events}
    triggers: dict[str, list[Event]] = {}
    causes: set[int] = set()
    for e in events:
        t = e.raw.get("trigger_id")
        if isinstance(t, str) and e.kind not in (ev.STAGE_FINISHED,) and t != "bootstrap":
            triggers.setdefault(t, []).append(e)
            m = re.fullmatch(r"drift-(\d+)", t)
            if m:
                causes.add(int(m.group(1)))
    out: list[tuple[int, Chapter]] = []
    for trigger, evs in triggers.items():
        ch = _retrain_chapter(trigger, evs, by_id, stale or {})
        out.append((ch.events[0] if ch.events else evs[0].id, ch))
    alerts: list[Event] = []

    def flush() -> None:
        if alerts:
            out.append((alerts[0].id, _alerts_chapter(list(alerts))))
            alerts.clear()

    for e in events:
        p = e.raw
        if e.kind == ev.DRIFT_DETECTED and e.id not in causes:
            alerts.append(e)
            continue
        if e.kind in (
            ev.RETRAIN_REQUESTED,
            ev.MODEL_PROMOTED,
            ev.MODEL_ROLLED_BACK,
            ev.STAGE_FINISHED,
        ):
            flush()
        if e.kind == ev.STAGE_FINISHED:
            m = p.get("metrics", {})
            ok = "passed" if p.get("passed") else "FAILED"
            head = (
                f"{e.model_version} trained from scratch ({p.get('stage')} {ok}): validation "
                f"accuracy {_f(m.get('val_accuracy'))} on {m.get('val_rows', '?')} rows"
            )
            lines = (
                f"Trained on {m.get('train_rows', '?')} rows in {_f(m.get('seconds'), 1)} s; "
                f"golden-set accuracy {_f(m.get('golden_accuracy'))}.",
            )
            out.append(
                (
                    e.id,
                    Chapter(
                        "bootstrap",
                        GOOD if p.get("passed") else BAD,
                        head,
                        e.ts,
                        lines,
                        (e.id,),
                        e.model_version,
                    ),
                )
            )
        elif e.kind == ev.MODEL_ROLLED_BACK:
            auto = str(p.get("reason", "")).startswith("automatic")
            head = f"Rolled back {p.get('from')} → {p.get('to')}: {p.get('reason')}"
            out.append(
                (
                    e.id,
                    Chapter(
                        "rollback", BAD if auto else WARN, head, e.ts, (), (e.id,), str(p.get("to"))
                    ),
                )
            )
        elif e.kind == ev.MODEL_PROMOTED and p.get("reason") == "adopted":
            m, src = p.get("metrics", {}), p.get("adopted", {})
            name = Path(str(src.get("file", "?"))).name
            head = (
                f"{e.model_version} adopted from {name}: golden-set "
                f"accuracy {_f(m.get('golden_accuracy'))} on {m.get('golden_rows', '?')} rows"
            )
            lines = (f"Trained outside driftloop ({src.get('format', '?')}, sha256 "
                     f"{str(src.get('sha256', '?'))[:16]}…).",)
            out.append(
                (e.id, Chapter("bootstrap", GOOD, head, e.ts, lines, (e.id,), e.model_version))
            )
        elif (
            e.kind == ev.MODEL_PROMOTED
            and not isinstance(p.get("trigger_id"), str)
            and p.get("reason") != "bootstrap"
        ):
            head = f"{e.model_version} promoted by hand: {p.get('reason')}"
            out.append((e.id, Chapter("promotion", WARN, head, e.ts, (), (e.id,), e.model_version)))
    flush()
    out.sort(key=lambda pair: pair[0])
    return [ch for _, ch in out]
