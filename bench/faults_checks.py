"""The checks of the fault campaign (bench/faults.py) after each kill, and its table of
trials and failures per phase; kept apart so that the campaign stays under 500 lines."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

PHASES = ("ingest", "retrain", "gate", "promotion", "export", "hook")


def check_state(state: Path, acked: set[str]) -> dict[str, Any]:
    """The checks after a kill, the daemon dead: a dict of failures (empty: all held)."""
    from runtime.store.db import Database
    from runtime.store.events import EventLog
    from runtime.store.versions import Registry

    failures: dict[str, Any] = {}
    conn = sqlite3.connect(state / "driftloop.db", timeout=30)
    try:
        ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if ok != "ok":
            failures["corrupt"] = ok
        conn.execute("CREATE TEMP TABLE acked (id TEXT PRIMARY KEY)")
        conn.executemany("INSERT INTO acked VALUES (?)", ((i,) for i in acked))
        stored = conn.execute(
            "SELECT count(*), count(DISTINCT row_id) FROM rows "
            "WHERE row_id IN (SELECT id FROM acked)"
        ).fetchone()
        if stored[0] != len(acked) or stored[1] != len(acked):
            failures["lost_rows"] = len(acked) - stored[1]
            failures["duplicate_rows"] = stored[0] - stored[1]
        promoted = Counter(
            json.loads(p).get("trigger_id")
            for (p,) in conn.execute("SELECT payload FROM events WHERE kind = 'model.promoted'")
        )
        twice = {t: n for t, n in promoted.items() if t and n > 1}
        if twice:
            failures["double_promotion"] = twice
    finally:
        conn.close()
    db = Database.for_state_dir(state, None)
    try:
        reg = Registry(db, state / "models", EventLog(db))
        champion = reg.champion()
        if champion is not None:
            try:
                reg.verify(champion)
                reg.load(champion)
            except Exception as err:
                failures["champion"] = f"{champion}: {err}"
    finally:
        db.dispose()
    return failures


def table(result: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    kinds = (
        "lost_rows",
        "duplicate_rows",
        "corrupt",
        "champion",
        "double_promotion",
        "leftover_processes",
        "restart",
    )
    head = f"{'phase':<10} {'trials':>6} {'reached':>7} {'failed':>6}  " + " ".join(
        f"{k:>8.8}" for k in kinds
    )
    lines = [head]
    summary: dict[str, Any] = {}
    seen: set[str] = set()  # a trigger promoted twice stays so: count it at its first trial
    for t in result["trials"]:
        doubles = set(t["failures"].get("double_promotion") or {})
        t["new_double_promotions"] = sorted(doubles - seen)
        seen |= doubles
        if doubles and not t["new_double_promotions"]:
            t["failures"] = {k: v for k, v in t["failures"].items() if k != "double_promotion"}
    for phase in (*PHASES, "all"):
        rows = [t for t in result["trials"] if phase in ("all", t["phase"])]
        by = {k: sum(1 for t in rows if t["failures"].get(k)) for k in kinds}
        failed = sum(1 for t in rows if t["failures"])
        reached = sum(1 for t in rows if t["reached"])
        summary[phase] = {"trials": len(rows), "reached": reached, "failed": failed, **by}
        lines.append(
            f"{phase:<10} {len(rows):>6} {reached:>7} {failed:>6}  "
            + " ".join(f"{by[k]:>8}" for k in kinds)
        )
    return "\n".join(lines), summary
