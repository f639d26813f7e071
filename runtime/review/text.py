"""Plain-text views of the state for the CLI: event lines, status, model tables.

:func:`event_summary` is the one sentence per event kind, read from the kind's typed
payload; the CLI's event lines and the review page's event log both show it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from runtime.store import events as ev
from runtime.store.db import Database, quarantine, retrain_requests, rows
from runtime.store.estimated import estimated_summary
from runtime.store.estimated_mae import estimated_mae
from runtime.store.events import Event, EventLog
from runtime.store.lock import StateLock
from runtime.store.served import realized_summary
from runtime.store.versions import ModelVersion, Registry


def _f(v: Any, digits: int = 3) -> str:
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def event_summary(e: Event) -> str:
    """One human sentence about an event (the CLI's event lines, the page's event log)."""
    match e.payload:
        case ev.DaemonStarted() as p:
            return f"daemon started (champion {p.champion}, source {p.source})"
        case ev.DaemonStopped() as p:
            return f"daemon stopped: {p.reason} after {p.rows_seen} rows"
        case ev.IngestRejected() as p:
            ex = p.examples[0] if p.examples else ev.RejectedRow(row=None)
            return (
                f"{p.source}: {p.rejected} rejected, {p.accepted} accepted"
                f" — e.g. row {'?' if ex.row is None else ex.row}: {ex.reason}"
            )
        case ev.DriftDetected() as p:
            return (
                f"{p.detector} on {p.signal} at row {p.row} "
                f"(onset {p.onset}, statistic {_f(p.statistic)}) → {p.action}: {p.reason}"
            )
        case ev.RetrainRequested() as p:
            why = f"after {p.detector}" if p.kind == "drift" else f"{p.kind}: {p.reason}"
            return f"{p.trigger_id}: rows {p.onset}..{p.upto} ({p.labelled_rows} labelled), {why}"
        case ev.RetrainStarted() as p:
            return f"{p.trigger_id}: {p.champion} → {p.candidate} ({p.strategy})"
        case ev.RetrainProgress() as p:
            return f"epoch {p.epoch}: loss {_f(p.loss, 4)}, {p.samples} samples"
        case ev.RetrainFinished() as p:
            return (
                f"{p.candidate}: {p.samples} samples in {_f(p.seconds, 1)} s "
                f"({p.rows_train} new rows + rehearsal)"
            )
        case ev.RetrainFailed() as p:
            return f"{p.trigger_id}: {p.reason}"
        case ev.Gate() as p:
            return gate_summary(p, passed=e.kind == ev.GATE_PASSED)
        case ev.ModelPromoted() as p:
            return f"{e.model_version} is champion (was {p.previous_champion}): {p.reason}"
        case ev.ModelRolledBack() as p:
            return f"{p.from_} → {p.to}: {p.reason}"
        case ev.StageFinished() as p:
            missed = "; ".join(p.missed or [])
            return (
                f"stage {p.stage} {'passed' if p.passed else 'FAILED'}: "
                f"validation accuracy {_f(p.accuracy)}" + (f" (missed: {missed})" if missed else "")
            )
        case ev.LabelsRequested() as p:
            shown = ", ".join(str(r) for r in p.rows[:8]) + (" ..." if len(p.rows) > 8 else "")
            return f"label {len(p.rows)} rows first: {shown} ({p.reason})"
    return ""


NEXT_STEP = {
    "promote": "promote",
    "refuse": "refuse",
    "await approval": "wait for `driftloop approve/reject`",
    "shadow": "score live traffic in shadow first",
    "appeal": "judge it on live traffic beside the champion (it failed only golden checks)",
}


def gate_summary(p: ev.Gate, passed: bool, reasons: bool = True) -> str:
    """A gate decision in words: the verdict, what happens next, and (``reasons``) why."""
    failed = sum(1 for c in p.checks if not c.passed)
    nxt = NEXT_STEP.get(str(p.next), "promote" if passed else "refuse")
    stage = " after shadow" if p.stage == "shadow" else ""
    counted = f"{failed} of {len(p.checks)} checks failed" if p.checks else "no checks"
    head = f"{p.candidate} vs {p.champion}{stage}: {nxt} ({counted})"
    return f"{head} — " + " ".join(p.reasons) if reasons else head


def gate_checks(p: ev.Gate) -> list[str]:
    """One indented line per check of a gate decision."""
    return [
        f"        {'pass' if c.passed else 'FAIL'}  {c.name} [{c.metric}]  {c.reason}"
        for c in p.checks
    ]


def event_line(e: Event) -> str:
    """An event as one line of ``driftloop events`` (a gate's checks on lines below)."""
    line = f"{e.id:>5}  {e.ts}  {e.kind:<17} {e.model_version or '-':<5} {event_summary(e)}"
    p = e.payload
    if isinstance(p, ev.Gate) and len(p.checks) > 1:
        # the check lines say why: the head line does not repeat them
        head = gate_summary(p, passed=e.kind == ev.GATE_PASSED, reasons=False)
        line = f"{e.id:>5}  {e.ts}  {e.kind:<17} {e.model_version or '-':<5} {head}"
        line = "\n".join([line, *gate_checks(p)])
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
    meta = registry.get(champion).meta if champion else None
    regression = meta is not None and "target" in meta  # a regression unit scales its target
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
        "realized_accuracy": realized_summary(db, metric="mae" if regression else "accuracy"),
        "estimated_accuracy": None if regression else estimated_summary(db, champion, meta),
        "estimated_mae": estimated_mae(db, champion) if regression else None,
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
        f"retrains:    {pending or 'none pending'}{_held_text(st)}",
        f"last drift:  {st['last_drift'] or '-'}",
        f"promoted:    {st['last_promotion'] or '-'}",
        f"events:      {st['events']}",
        *_realized_lines(st.get("realized_accuracy")),
        _estimated_line(st.get("estimated_accuracy"), st.get("estimated_mae")),
    ]
    if st.get("source_lag") is not None or st.get("source_lag_error"):
        lines.insert(5, f"lag:         {_lag_text(st)}")
    return "\n".join(lines)


def _held_text(st: dict[str, Any]) -> str:
    """The rows a running daemon holds for the gate's champion (none: nothing)."""
    held = st.get("held_rows") or 0
    return f"; {held:,} stored rows wait for the gate's champion" if held else ""


def _realized_lines(ra: dict[str, Any] | None) -> list[str]:
    """The realized accuracy of what was served: over the recent windows, then per
    version (nothing before a labelled row was served)."""
    if not ra or not any(r["rows"] for r in ra["recent"]):
        return ["realized:    - (no labelled row served yet)"]
    name = ra["metric"]
    seen: set[int] = set()
    recent = []
    for r in ra["recent"]:  # a window larger than the stream repeats the one before
        if r["rows"] and r["rows"] not in seen:
            seen.add(r["rows"])
            recent.append(f"{r['value']:.3f} last {r['rows']:,}")
    per = [(v, r) for v, r in ra["by_version"].items() if r["rows"]]
    versions = ", ".join(f"{v} {r['value']:.3f} ({r['rows']:,})" for v, r in per)
    window = per[0][1]["window"] if per else 0
    widest = max((r for r in ra["recent"] if r["rows"]), key=lambda r: r["rows"])
    span = ([f"             data time: {widest['first_time']} to {widest['last_time']}"
             f" (the last {widest['rows']:,})"] if widest.get("first_time") else [])
    return [
        f"realized:    {name} " + ", ".join(recent) + " labelled served rows",
        *span,
        f"             by version: {versions}  (each on its last {window:,} at most)",
    ]


def _estimated_mae_line(est: dict[str, Any]) -> str:
    if est.get("value") is None:
        return "estimated:   - (no loss model, or no row monitored by the champion yet)"
    band = f" (band {est['low']:.4g}-{est['high']:.4g})" if est.get("low") is not None else ""
    line = (f"estimated:   MAE {est['value']:.4g}{band} on {est['version']}'s last "
            f"{est['rows']:,} rows (loss model, no labels needed)")
    vs = est.get("versus_realized")
    if vs:
        line += (f"; {vs['estimated']:.4g} on the {vs['rows']:,} labelled rows where "
                 f"realized {vs['realized']['value']:.4g}")
        if vs.get("diverged"):
            line += ", OUTSIDE the band (the target's relation to the inputs changed?)"
    return line


def _estimated_line(est: dict[str, Any] | None, mae: dict[str, Any] | None = None) -> str:
    """The champion's label-free estimate, and how it compares where labels arrived."""
    if mae is not None:
        return _estimated_mae_line(mae)
    if est is None:
        return "estimated:   - (a regression model has no label-free estimate)"
    if est.get("value") is None:
        return "estimated:   - (no row monitored by the champion yet)"
    f1 = "" if est.get("macro_f1") is None else f", macro-F1 {est['macro_f1']:.3f}"
    line = (f"estimated:   accuracy {est['value']:.3f} [{est['low']:.3f}, {est['high']:.3f}]{f1} "
            f"on {est['version']}'s last {est['rows']:,} rows (no labels needed)")
    vs = est.get("versus_realized")
    if vs:
        real, mark = vs["realized"], "DIVERGES (concept drift?)" if vs["diverged"] else "agrees"
        line += (f"; realized {real['value']:.3f} on the same {real['rows']:,} labelled rows: "
                 f"{mark}")
    return line


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
    mae = v.meta.get("metrics", {}).get("val_mae")
    if isinstance(mae, float):
        return f"val MAE {mae:.3f}"
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
