"""Plain-text views of the state for the CLI: event lines, status, model tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from runtime.store import events as ev
from runtime.store.db import Database, quarantine, retrain_requests, rows
from runtime.store.events import Event, EventLog
from runtime.store.lock import StateLock
from runtime.store.versions import ModelVersion, Registry


def _f(v: Any, digits: int = 3) -> str:
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def event_summary(e: Event) -> str:
    """One human sentence about an event."""
    p = e.raw
    k = e.kind
    if k == ev.DAEMON_STARTED:
        return f"daemon started (champion {p.get('champion')}, source {p.get('source')})"
    if k == ev.DAEMON_STOPPED:
        return f"daemon stopped: {p.get('reason')} after {p.get('rows_seen')} rows"
    if k == ev.INGEST_REJECTED:
        ex = p.get("examples") or [{}]
        first = ex[0].get("reason", "") if ex else ""
        return (
            f"{p.get('source')}: {p.get('rejected')} rejected, {p.get('accepted')} accepted"
            f" — e.g. row {ex[0].get('row', '?')}: {first}"
        )
    if k == ev.DRIFT_DETECTED:
        return (
            f"{p.get('detector')} on {p.get('signal')} at row {p.get('row')} "
            f"(onset {p.get('onset')}, statistic {_f(p.get('statistic'))}) → "
            f"{p.get('action')}: {p.get('reason')}"
        )
    if k == ev.RETRAIN_REQUESTED:
        return (
            f"{p.get('trigger_id')}: rows {p.get('onset')}..{p.get('upto')} "
            f"({p.get('labelled_rows')} labelled), after {p.get('detector')}"
        )
    if k == ev.RETRAIN_STARTED:
        return (
            f"{p.get('trigger_id')}: {p.get('champion')} → {p.get('candidate')}"
            f" ({p.get('strategy')})"
        )
    if k == ev.RETRAIN_PROGRESS:
        return f"epoch {p.get('epoch')}: loss {_f(p.get('loss'), 4)}, {p.get('samples')} samples"
    if k == ev.RETRAIN_FINISHED:
        return (
            f"{p.get('candidate')}: {p.get('samples')} samples in {_f(p.get('seconds'), 1)} s "
            f"({p.get('rows_train')} new rows + rehearsal)"
        )
    if k == ev.RETRAIN_FAILED:
        return f"{p.get('trigger_id')}: {p.get('reason')}"
    if k in (ev.GATE_PASSED, ev.GATE_FAILED):
        return gate_summary(p, passed=k == ev.GATE_PASSED)
    if k == ev.MODEL_PROMOTED:
        return (
            f"{e.model_version} is champion (was {p.get('previous_champion')}): {p.get('reason')}"
        )
    if k == ev.MODEL_ROLLED_BACK:
        return f"{p.get('from')} → {p.get('to')}: {p.get('reason')}"
    if k == ev.STAGE_FINISHED:
        m = p.get("metrics", {})
        acc = m.get("val_accuracy", m.get("accuracy"))  # single bootstrap vs staged stages
        missed = "; ".join(p.get("missed") or [])
        return (
            f"stage {p.get('stage')} {'passed' if p.get('passed') else 'FAILED'}: "
            f"validation accuracy {_f(acc)}" + (f" (missed: {missed})" if missed else "")
        )
    return ""


def gate_summary(p: dict[str, Any], passed: bool, reasons: bool = True) -> str:
    """A gate decision in words: the verdict, what happens next, and (``reasons``) why."""
    checks = p.get("checks", [])
    failed = sum(1 for c in checks if not c.get("passed"))
    nxt = {
        "promote": "promote",
        "refuse": "refuse",
        "await approval": "wait for `driftloop approve/reject`",
        "shadow": "score live traffic in shadow first",
    }.get(str(p.get("next")), "promote" if passed else "refuse")
    stage = " after shadow" if p.get("stage") == "shadow" else ""
    counted = f"{failed} of {len(checks)} checks failed" if checks else "no checks"
    head = f"{p.get('candidate')} vs {p.get('champion')}{stage}: {nxt} ({counted})"
    return f"{head} — " + " ".join(p.get("reasons", [])) if reasons else head


def gate_checks(p: dict[str, Any]) -> list[str]:
    """One indented line per check of a gate decision."""
    return [
        f"        {'pass' if c.get('passed') else 'FAIL'}  {c.get('name')} [{c.get('metric')}]"
        f"  {c.get('reason')}"
        for c in p.get("checks", [])
    ]


def event_line(e: Event) -> str:
    line = f"{e.id:>5}  {e.ts}  {e.kind:<17} {e.model_version or '-':<5} {event_summary(e)}"
    if e.kind in (ev.GATE_PASSED, ev.GATE_FAILED) and len(e.raw.get("checks", [])) > 1:
        # the check lines say why: the head line does not repeat them
        head = gate_summary(e.raw, passed=e.kind == ev.GATE_PASSED, reasons=False)
        line = f"{e.id:>5}  {e.ts}  {e.kind:<17} {e.model_version or '-':<5} {head}"
        line = "\n".join([line, *gate_checks(e.raw)])
    return line


def status_dict(
    state_dir: Path, db: Database, events: EventLog, registry: Registry
) -> dict[str, Any]:
    with db.connect() as conn:
        n_rows = conn.execute(select(func.count()).select_from(rows)).scalar_one()
        n_labelled = conn.execute(
            select(func.count()).select_from(rows).where(rows.c.label.is_not(None))
        ).scalar_one()
        n_quarantined = conn.execute(select(func.count()).select_from(quarantine)).scalar_one()
        pending = conn.execute(
            select(retrain_requests.c.trigger_id, retrain_requests.c.status).where(
                retrain_requests.c.status.in_(["pending", "running"])
            )
        ).all()
    last = events.list(descending=True, limit=1)
    last_drift = events.last(ev.DRIFT_DETECTED)
    last_promo = events.last(ev.MODEL_PROMOTED)
    champion = registry.champion()
    return {
        "state_dir": str(state_dir),
        "daemon_running": StateLock(state_dir).held_by_other(),
        "champion": champion,
        "champion_files": (registry.problem(champion) if champion else None) or "verified",
        "versions": len(registry.list()),
        "rows": n_rows,
        "labelled_rows": n_labelled,
        "quarantined_rows": n_quarantined,
        "retrains_pending": [{"trigger_id": t, "status": s} for t, s in pending],
        "events": events.count(),
        "last_event": last[0].to_dict() if last else None,
        "last_drift": last_drift.ts if last_drift else None,
        "last_promotion": last_promo.ts if last_promo else None,
    }


def status_text(st: dict[str, Any]) -> str:
    pending = ", ".join(f"{r['trigger_id']} ({r['status']})" for r in st["retrains_pending"])
    lines = [
        f"state:       {st['state_dir']}",
        f"daemon:      {'running' if st['daemon_running'] else 'not running'}",
        f"champion:    {st['champion'] or '(none yet: run bootstrap)'}"
        f"  ({st['versions']} versions)",
        *(
            [f"             FILES DO NOT VERIFY: {st['champion_files']}"]
            if st["champion"] and st.get("champion_files", "verified") != "verified"
            else []
        ),
        f"rows:        {st['rows']} ingested, {st['labelled_rows']} labelled, "
        f"{st['quarantined_rows']} quarantined",
        f"retrains:    {pending or 'none pending'}",
        f"last drift:  {st['last_drift'] or '-'}",
        f"promoted:    {st['last_promotion'] or '-'}",
        f"events:      {st['events']}",
    ]
    if st.get("source_lag") is not None or st.get("source_lag_error"):
        lines.insert(5, f"lag:         {_lag_text(st)}")
    return "\n".join(lines)


def _lag_text(st: dict[str, Any]) -> str:
    """The broker's backlog: per partition, then in all (or why it is unknown)."""
    if st.get("source_lag_error"):
        return f"unknown ({st['source_lag_error']})"
    lag: dict[str, int] = st["source_lag"]
    parts = ", ".join(f"{p}: {n}" for p, n in lag.items())
    return f"{sum(lag.values())} messages not yet stored" + (f" ({parts})" if parts else "")


def _holdout(v: ModelVersion) -> str:
    h = v.meta.get("metrics", {}).get("holdout")
    if h:
        return f"{h[0]:.3f}→{h[1]:.3f}"
    val = v.meta.get("metrics", {}).get("val_accuracy")
    return f"val {val:.3f}" if isinstance(val, float) else "-"


def file_problems(registry: Registry, versions: list[ModelVersion]) -> dict[str, str]:
    """Why each version whose files do not verify fails (pruned versions are not listed)."""
    return {v.version: p for v in versions if (p := registry.problem(v.version)) is not None}


def models_text(
    versions: list[ModelVersion], champion: str | None, problems: dict[str, str] | None = None
) -> str:
    """The versions as a table; ``problems`` (:func:`file_problems`) flags those whose
    files do not verify with ``!`` and says why under the table."""
    head = (
        f"{'version':<8} {'status':<10} {'parent':<7} {'strategy':<10} {'rows':<14} "
        f"{'new-data acc':<14} created"
    )
    out = [head]
    for v in versions:
        d = v.meta.get("data", {})
        span = f"{d.get('first_row', '?')}..{d.get('last_row', '?')}"
        mark = "*" if v.version == champion else " "
        mark = "!" if problems and v.version in problems else mark
        out.append(
            f"{mark}{v.version:<7} {v.status:<10} {v.parent or '-':<7} "
            f"{v.meta.get('strategy', '-'):<10} {span:<14} {_holdout(v):<14} {v.created_at}"
        )
    out.append("(* champion; new-data acc = champion→candidate on the held-out split)")
    for version, why in (problems or {}).items():
        champ = " (the champion)" if version == champion else ""
        out.append(f"! {version}{champ} files do not verify: {why}")
    return "\n".join(out)


def lineage_text(versions: list[ModelVersion], champion: str | None) -> str:
    by = {v.version: v for v in versions}
    out = []
    for v in versions:
        chain = [v.version]
        p = v.parent
        while p is not None and p in by:
            chain.append(p)
            p = by[p].parent
        mark = " (champion)" if v.version == champion else f" ({v.status})"
        trigger = v.meta.get("trigger_id", "-")
        out.append(
            " ← ".join(chain)
            + mark
            + f"  trigger={trigger} config={str(v.meta.get('config_hash', ''))[:12]}"
        )
    return "\n".join(out)
