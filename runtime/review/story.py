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
from typing import Any, TypeVar

from runtime.store import events as ev
from runtime.store.events import Event

P = TypeVar("P", bound=ev.Payload)

__all__ = ["Chapter", "check_phrase", "drift_sentence", "gate_headline", "story"]

GOOD, BAD, WARN, INFO = "good", "bad", "warn", "info"


@dataclass(frozen=True)
class Chapter:
    """One decision or episode of the story.

    ``tone`` is ``good`` (a promotion), ``bad`` (a refusal, a failure, a rollback),
    ``warn`` (alerts, waiting for a person) or ``info``; ``events`` are the ids of the
    events it tells (the first is where it starts); ``gate`` is the last gate's payload and
    ``progress`` the retrain's ``(epoch, loss, val_accuracy)`` points, if any.
    """

    kind: str
    tone: str
    headline: str
    ts: str
    lines: tuple[str, ...] = ()
    events: tuple[int, ...] = ()
    version: str | None = None
    gate: ev.Gate | None = None
    progress: tuple[tuple[int, float, float | None], ...] = field(default=())


def _f(x: Any, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if isinstance(x, int | float) else "?"


def _num(text: str, pattern: str) -> float | None:
    m = re.search(pattern, text)
    return float(m.group(1)) if m else None


def _pct(x: Any) -> str:
    return f"{100 * x:.1f}%" if isinstance(x, int | float) else "?"


# -- drift ------------------------------------------------------------------------------
def _feature_shift(r: Mapping[str, Any]) -> str:
    shift = ""
    if isinstance(r.get("ref_mean"), int | float) and isinstance(r.get("cur_mean"), int | float):
        shift = f"mean {r['ref_mean']:.4g} → {r['cur_mean']:.4g}"
    pv = r.get("p_adjusted")
    pval = f"p = {pv:.2g}" if isinstance(pv, int | float) else ""
    inner = ", ".join(x for x in (shift, pval) if x)
    return f"{r.get('feature')} ({inner})" if inner else str(r.get("feature"))


def drift_sentence(p: ev.DriftDetected) -> str:
    """What a detector saw, in words (without the row or the action).

    ``details`` are the detector's own: a mean before and after, or a table of features.
    """
    d = p.details or {}
    before, after = d.get("mean_before"), d.get("mean_after")
    if isinstance(before, int | float) and isinstance(after, int | float):
        verb = "rose" if after > before else "fell"
        if p.signal == "error":
            return f"the error rate {verb} from {_pct(before)} to {_pct(after)}"
        return f"the mean {p.signal} {verb} from {before:.3g} to {after:.3g}"
    table = d.get("features")
    if isinstance(table, list) and table:
        flagged = [r for r in table if r.get("drifted")]
        flagged.sort(key=lambda r: r.get("p_adjusted") if r.get("p_adjusted") is not None else 1)
        parts = [_feature_shift(r) for r in flagged[:3]]
        more = f" and {len(flagged) - 3} more" if len(flagged) > 3 else ""
        if parts:
            return f"the input distribution changed: {', '.join(parts)}{more}"
    thr = p.threshold
    vs = f" (threshold {thr:.3g})" if isinstance(thr, int | float) else ""
    return f"{p.signal} drifted: statistic {_f(p.statistic)}{vs}"


def _drift_line(p: ev.DriftDetected) -> str:
    onset = f", change began near row {p.onset}" if p.onset is not None else ""
    return f"Row {p.row}, {p.detector}: {drift_sentence(p)}{onset}."


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


def check_phrase(c: ev.GateCheck, champion: str | None, confidence: Any = 0.95) -> str:
    """One gate check in words, e.g. ``"it did not beat v2 on the new data (0.573 vs
    0.605, needed +0.02 or ≥ 0.90)"``."""
    thr = str(c.threshold)
    metric = "" if c.metric == "accuracy" else f"{c.metric} "
    where = _where(str(c.name), champion)
    cand, champ = c.candidate, c.champion
    nums = c.numbers or {}
    gain = _num(thr, r"gain >= (-?[\d.]+(?:e-?\d+)?)")
    floor = _num(thr, r"candidate >= (-?[\d.]+(?:e-?\d+)?)")
    loss = _num(thr, r"loss <= (-?[\d.]+(?:e-?\d+)?)")
    unit = " relative" if "relative" in thr else ""
    conf = f"{100 * confidence:.0f}%" if isinstance(confidence, float) else "95%"
    vs = f"{metric}{_f(cand)} vs {_f(champ)}"
    passed = bool(c.passed)
    if cand is None or (champ is None and floor is None):
        return str(c.reason or c.name)
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
            base = float("nan") if champ is None else champ  # a floor with no champion
            if gain is not None and cand - base >= gain - 1e-9:
                return (
                    f"its gain over {champion} {where} was too uncertain to count ({vs}, "
                    f"needed {need} at {conf} confidence)"
                )
            if cand > base:
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
    p: ev.Gate, approved: bool = False, stale: bool = False, rejected: bool = False
) -> tuple[str, str]:
    """``(tone, headline)`` of a ``gate.passed``/``gate.failed`` payload; ``approved``: a
    candidate that waited for a person has been promoted since; ``rejected``: a person has
    rejected it since; ``stale``: one that waits but can no longer be approved (the
    champion changed since its gate)."""
    cand, champ = p.candidate, p.champion
    reasons = [str(r) for r in p.reasons]
    if who := p.rejected_by:
        # review.reject records the reason as "Rejected by <who>: <why>."; say who once
        why = " ".join(r.removeprefix(f"Rejected by {who}: ") for r in reasons)
        return BAD, f"{cand} rejected by {who}: {why or 'no reason given.'}"
    if not p.passed:
        conf = 0.95 if p.confidence is None else p.confidence
        failed = [check_phrase(c, champ, conf) for c in p.checks if not c.passed]
        why = "; ".join(failed[:2]) + (f"; and {len(failed) - 2} more" if len(failed) > 2 else "")
        if p.next == "appeal":
            return WARN, (f"{cand} failed only its golden checks ({why}); it is judged on the "
                          f"live rows that follow, beside {champ}")
        return BAD, f"{cand} refused: {why or ' '.join(reasons) or 'no reason recorded'}"
    tone, verb = _verdict(p, approved, stale, rejected)
    main = [check_phrase(c, champ) for c in p.checks if not c.name.startswith("golden")]
    kept = [c for c in p.checks if c.name.startswith("golden")]
    if kept:
        worst = min(kept, key=lambda c: c.numbers.get("gain") or 0.0)
        if len(kept) == 1:
            main.append(check_phrase(worst, champ))
        else:
            closest = check_phrase(worst, champ).removeprefix("it held up on ")
            main.append(f"it held up on all {len(kept)} earlier golden sets (closest: {closest})")
    return tone, f"{verb}: {' and '.join(main[:3])}" if main else verb


def _verdict(p: ev.Gate, approved: bool, stale: bool, rejected: bool) -> tuple[str, str]:
    """``(tone, what became of it)`` for a candidate that passed its gate."""
    cand, nxt = p.candidate, p.next
    if nxt == "await approval" and approved:
        return GOOD, f"{cand} passed the gate and was approved"
    if nxt == "await approval" and rejected:
        return BAD, f"{cand} passed the gate and was then rejected by a person"
    if nxt == "await approval" and stale:
        return WARN, f"{cand} passed the gate but cannot be approved (its evidence is stale)"
    if nxt == "await approval":
        return WARN, f"{cand} passed the gate and awaits a person's approval"
    if nxt == "shadow":
        return WARN, f"{cand} passed the gate and is scored in shadow next to {p.champion}"
    after = " after its shadow run" if p.stage == "shadow" else ""
    return GOOD, f"{cand} promoted{after}"


def _noisy_hint(p: ev.Gate) -> str | None:
    """A likely reading when both models fail on the new data but not on old data."""
    checks = {c.name: c for c in p.checks}
    new, champ = checks.get("new_data"), p.champion
    own = checks.get(f"golden:{champ}")
    if p.passed or new is None or own is None:
        return None
    a_new, a_own = new.champion, own.champion
    if not (isinstance(a_new, float) and isinstance(a_own, float)):
        return None
    if a_new < 0.75 and a_own - a_new > 0.2 and (new.candidate or 0) < a_new + 0.05:
        return (
            f"A likely reading: {champ} still scores {a_own:.3f} on its own golden set "
            f"but only {a_new:.3f} on the new rows, and retraining did not help: the new "
            "rows look inconsistent (noisy or wrong labels?) rather than a new pattern "
            "to learn."
        )
    return None


# -- chapters ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Retrain:
    """The events of one trigger, by what they say."""

    trigger: str
    events: list[Event]
    requested: list[ev.RetrainRequested]
    started: list[tuple[Event, ev.RetrainStarted]]
    finished: list[ev.RetrainFinished]
    failed: list[tuple[Event, ev.RetrainFailed]]
    gates: list[tuple[Event, ev.Gate]]
    promoted: list[tuple[Event, ev.ModelPromoted]]
    progress: list[tuple[Event, ev.RetrainProgress]]

    @classmethod
    def of(cls, trigger: str, evs: list[Event]) -> _Retrain:
        def kind(k: str, t: type[P]) -> list[tuple[Event, P]]:
            return [(e, e.payload) for e in evs if e.kind == k and isinstance(e.payload, t)]

        gates = kind(ev.GATE_PASSED, ev.Gate) + kind(ev.GATE_FAILED, ev.Gate)
        gates.sort(key=lambda pair: pair[0].id)
        return cls(
            trigger,
            evs,
            [p for _, p in kind(ev.RETRAIN_REQUESTED, ev.RetrainRequested)],
            kind(ev.RETRAIN_STARTED, ev.RetrainStarted),
            [p for _, p in kind(ev.RETRAIN_FINISHED, ev.RetrainFinished)],
            kind(ev.RETRAIN_FAILED, ev.RetrainFailed),
            gates,
            kind(ev.MODEL_PROMOTED, ev.ModelPromoted),
            kind(ev.RETRAIN_PROGRESS, ev.RetrainProgress),
        )


def _cause_lines(r: _Retrain, by_id: Mapping[int, Event], ids: list[int]) -> list[str]:
    """Why it ran (the drift that caused it, put first in ``ids``) and what it trained."""
    lines: list[str] = []
    m = re.fullmatch(r"drift-(\d+)", r.trigger)
    cause = by_id.get(int(m.group(1))) if m else None
    if cause is not None and isinstance(cause.payload, ev.DriftDetected):
        lines.append("Why: " + _drift_line(cause.payload))
        ids.insert(0, cause.id)
    if r.requested and cause is None:
        rp = r.requested[0]
        why = rp.reason or rp.detector or "requested"
        if rp.kind in ("drift", "manual") or not r.started:
            lines.append(f"Why: {why} (trigger {r.trigger}).")
        else:  # a trigger besides drift: its reason is the story's sentence
            made = r.started[-1][1].candidate
            lines.append(f"Why: {made} was retrained because {why} (trigger {r.trigger}).")
    if r.started:
        sp = r.started[-1][1]
        retries = f" (attempt {len(r.started)})" if len(r.started) > 1 else ""
        lines.append(
            f"Retrained {sp.champion} → {sp.candidate} with {sp.strategy} on rows "
            f"{sp.onset}..{sp.upto}{retries}."
        )
    if r.finished:
        f = r.finished[-1]
        by = f.stopped_by
        stop = f" (stopped by its {by} budget)" if by not in (None, "epochs") else ""
        lines.append(
            f"Training: {f.rows_train} rows to learn from + {f.rows_holdout}"
            f" held out to judge it, {f.epochs} epochs{stop}, "
            f"{_f(f.seconds, 1)} s, final loss {_f(f.final_loss, 4)}."
        )
    return lines


def _gate_outcome(r: _Retrain, stale: Mapping[str, str], lines: list[str]) -> tuple[str, str]:
    """``(tone, headline)`` from the last gate, its outcome added to ``lines``."""
    g, gp = r.gates[-1]
    approved = any(e.id > g.id and e.model_version == g.model_version for e, _ in r.promoted)
    why_stale = None if approved else stale.get(str(gp.candidate))
    tone, head = gate_headline(gp, approved=approved, stale=why_stale is not None)
    hint = _noisy_hint(gp)
    if hint:
        lines.append(hint)
    if why_stale is not None:
        lines.append(f"Cannot approve: {why_stale}.")  # the words approve() refuses with
    if r.promoted:
        e, pp = r.promoted[-1]
        lines.append(
            f"Outcome: {e.model_version} became the champion "
            f"(replacing {pp.previous_champion})."
        )
    elif g.kind == ev.GATE_FAILED and gp.next == "appeal":
        lines.append(f"Outcome: pending; {gp.candidate} is scored on live traffic beside "
                     f"{gp.champion}.")
    elif g.kind == ev.GATE_FAILED:
        lines.append(f"Outcome: {gp.candidate} was refused; {gp.champion} stayed the champion.")
    return tone, head


def _retrain_chapter(
    trigger: str, evs: list[Event], by_id: dict[int, Event], stale: Mapping[str, str]
) -> Chapter:
    r = _Retrain.of(trigger, evs)
    ids = [e.id for e in evs if e.kind != ev.RETRAIN_PROGRESS]
    lines = _cause_lines(r, by_id, ids)
    start = r.started[-1] if r.started else None
    cand = start[1].candidate if start else None
    progress = tuple(
        (int(p.epoch), float(p.loss), p.val_accuracy)
        for e, p in r.progress
        if start is None or e.id > start[0].id
    )
    last = evs[-1]
    if r.gates:
        tone, head = _gate_outcome(r, stale, lines)
        gate = r.gates[-1][1]
        return Chapter("retrain", tone, head, last.ts, tuple(lines), tuple(ids), cand, gate,
                       progress)
    if r.failed and (start is None or r.failed[-1][0].id > start[0].id):
        fp = r.failed[-1][1]
        head = f"Retrain {trigger} {'cancelled' if fp.cancelled else 'failed'}: {fp.reason}"
        return Chapter("retrain", WARN if fp.cancelled else BAD, head, last.ts, tuple(lines),
                       tuple(ids), cand, None, progress)
    head = (
        f"Retrain {trigger} is running: {start[1].champion} → {cand}"
        if start
        else f"Retrain {trigger} is waiting to start"
    )
    return Chapter("retrain", INFO, head, last.ts, tuple(lines), tuple(ids), cand, None, progress)


def _alerts_chapter(alerts: list[tuple[Event, ev.DriftDetected]]) -> Chapter:
    (first, fp), (_, lp) = alerts[0], alerts[-1]
    dets = sorted({p.detector for _, p in alerts})
    rows = f"row {fp.row}" if len(alerts) == 1 else f"rows {fp.row}–{lp.row}"
    times = "once" if len(alerts) == 1 else f"{len(alerts)} times"
    action = str(fp.reason or fp.action)
    only = (
        "alert only"
        if all(p.action != "retrain" for _, p in alerts)
        else ("no retrain started yet")
    )
    head = f"{', '.join(dets)} flagged drift {times} ({rows}), {only}: {drift_sentence(fp)}"
    lines = [_drift_line(p) for _, p in alerts] + [f"Policy: {action}."]
    return Chapter(
        "alert",
        WARN,
        head,
        first.ts,
        tuple(lines),
        tuple(e.id for e, _ in alerts),
        first.model_version,
    )


def _bootstrap_chapter(e: Event, p: ev.StageFinished) -> Chapter:
    m = p.metrics
    ok = "passed" if p.passed else "FAILED"
    head = (
        f"{e.model_version} trained from scratch ({p.stage} {ok}): validation "
        f"accuracy {_f(m.get('val_accuracy'))} on {m.get('val_rows', '?')} rows"
    )
    lines = (
        f"Trained on {m.get('train_rows', '?')} rows in {_f(m.get('seconds'), 1)} s; "
        f"golden-set accuracy {_f(m.get('golden_accuracy'))}.",
    )
    tone = GOOD if p.passed else BAD
    return Chapter("bootstrap", tone, head, e.ts, lines, (e.id,), e.model_version)


def _promotion_chapter(e: Event, p: ev.ModelPromoted) -> Chapter | None:
    """An adoption or a promotion by hand (a retrain's promotion is in its chapter)."""
    if p.reason == "adopted":
        m, src = p.metrics or {}, p.adopted or {}
        name = Path(str(src.get("file", "?"))).name
        metric = ("MAE", "golden_mae") if "golden_mae" in m else ("accuracy", "golden_accuracy")
        head = (
            f"{e.model_version} adopted from {name}: golden-set "
            f"{metric[0]} {_f(m.get(metric[1]))} on {m.get('golden_rows', '?')} rows"
        )
        lines = (f"Trained outside driftloop ({src.get('format', '?')}, sha256 "
                 f"{str(src.get('sha256', '?'))[:16]}…).",)
        return Chapter("bootstrap", GOOD, head, e.ts, lines, (e.id,), e.model_version)
    if not isinstance(p.trigger_id, str) and p.reason != "bootstrap":
        head = f"{e.model_version} promoted by hand: {p.reason}"
        return Chapter("promotion", WARN, head, e.ts, (), (e.id,), e.model_version)
    return None


def _own_chapter(e: Event) -> Chapter | None:
    """The chapter an event makes on its own: a bootstrap, a rollback, an adoption."""
    p = e.payload
    if isinstance(p, ev.StageFinished):
        return _bootstrap_chapter(e, p)
    if isinstance(p, ev.ModelRolledBack):
        auto = str(p.reason).startswith("automatic")
        head = f"Rolled back {p.from_} → {p.to}: {p.reason}"
        return Chapter("rollback", BAD if auto else WARN, head, e.ts, (), (e.id,), str(p.to))
    if isinstance(p, ev.ModelPromoted):
        return _promotion_chapter(e, p)
    return None


_TRIGGERED = (
    ev.RetrainRequested,
    ev.RetrainStarted,
    ev.RetrainProgress,
    ev.RetrainFinished,
    ev.RetrainFailed,
    ev.Gate,
    ev.ModelPromoted,
)
_FLUSH = (ev.RETRAIN_REQUESTED, ev.MODEL_PROMOTED, ev.MODEL_ROLLED_BACK, ev.STAGE_FINISHED)


def _by_trigger(events: Sequence[Event]) -> tuple[dict[str, list[Event]], set[int]]:
    """The events of each retrain by trigger, and the ids of the drifts that caused one."""
    triggers: dict[str, list[Event]] = {}
    causes: set[int] = set()
    for e in events:
        p = e.payload
        t = p.trigger_id if isinstance(p, _TRIGGERED) else None
        if t and t != "bootstrap":  # a retrain's (the bootstrap has its own chapter)
            triggers.setdefault(t, []).append(e)
            m = re.fullmatch(r"drift-(\d+)", t)
            if m:
                causes.add(int(m.group(1)))
    return triggers, causes


def story(events: Sequence[Event], stale: Mapping[str, str] | None = None) -> list[Chapter]:
    """The chapters, in the order they began; ``stale`` maps a candidate awaiting approval
    that can no longer be approved to why (:func:`runtime.promotion.approval.approvals`)."""
    by_id = {e.id: e for e in events}
    triggers, causes = _by_trigger(events)
    out: list[tuple[int, Chapter]] = []
    for trigger, evs in triggers.items():
        ch = _retrain_chapter(trigger, evs, by_id, stale or {})
        out.append((ch.events[0] if ch.events else evs[0].id, ch))
    alerts: list[tuple[Event, ev.DriftDetected]] = []

    def flush() -> None:
        if alerts:
            out.append((alerts[0][0].id, _alerts_chapter(list(alerts))))
            alerts.clear()

    for e in events:
        if isinstance(e.payload, ev.DriftDetected) and e.id not in causes:
            alerts.append((e, e.payload))
            continue
        if e.kind in _FLUSH:
            flush()
        own = _own_chapter(e)
        if own is not None:
            out.append((e.id, own))
    flush()
    out.sort(key=lambda pair: pair[0])
    return [ch for _, ch in out]
