"""The short summary ``driftloop run --until-drained`` prints at the end.

Each drift detected (row, detector, rows after the true drift when the source knows it),
each retrain (samples, seconds), each gate decision with its checks, and the accuracy of
every version on each distribution seen (clean samples of each synthetic segment, or the
golden sets for other sources): the forgetting matrix.
"""

from __future__ import annotations

import numpy as np
import torch
from sqlalchemy import select

from runtime.config import DriftloopConfig
from runtime.intake.demo_stream import drift_points, evaluation_sample
from runtime.intake.settings import SyntheticSourceConfig
from runtime.store import events as ev
from runtime.store.db import Database, rows
from runtime.store.events import Event, EventLog
from runtime.store.unit import golden_sets, load_unit
from runtime.store.versions import Registry
from runtime.training.retrain_job import class_positions
from strategies.evaluation import accuracy

EVAL_ROWS = 1000


def _true_drifts(cfg: DriftloopConfig, db: Database) -> list[int]:
    """Row numbers (seq) where each synthetic segment after the first begins."""
    if not isinstance(cfg.source, SyntheticSourceConfig):
        return []
    out = []
    with db.connect() as conn:
        for offset in drift_points(cfg.source.segments):
            seq = conn.execute(select(rows.c.seq).where(rows.c.row_id == f"syn-{offset}")).scalar()
            if seq is not None:
                out.append(int(seq))
    return out


def distributions(
    cfg: DriftloopConfig, registry: Registry
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, x, y as class positions) for each distribution to report on."""
    src = cfg.source
    if isinstance(src, SyntheticSourceConfig):
        out = []
        for i, seg in enumerate(src.segments):
            x, y = evaluation_sample(src.segments, i, EVAL_ROWS, src.seed)
            name = seg.name or f"segment {i}"
            out.append((name, x, class_positions(y, cfg.schema.class_values)))
        return out
    champion = registry.champion()
    names = load_unit(registry, cfg, champion).golden_index if champion else []
    return [(f"golden {n}", x, y) for n, (x, y) in golden_sets(registry, names).items()]


def accuracy_matrix(
    cfg: DriftloopConfig, registry: Registry
) -> tuple[list[str], list[tuple[str, str, list[float]]]]:
    dists = distributions(cfg, registry)
    table = []
    for v in registry.list():
        try:
            unit = load_unit(registry, cfg, v.version)
        except Exception:
            table.append((v.version, v.status, [float("nan")] * len(dists)))
            continue
        accs = [
            accuracy(
                unit.model,
                torch.as_tensor(x, dtype=torch.float32),
                torch.as_tensor(y, dtype=torch.int64),
            )
            for _, x, y in dists
        ]
        table.append((v.version, v.status, accs))
    return [d[0] for d in dists], table


def _retrains(got: list[Event]) -> list[str]:
    out = ["Retrains:"]
    for e in got:
        match e.payload:
            case ev.RetrainFinished() as p:
                out.append(
                    f"  {p.trigger_id}: {p.candidate} trained on {p.rows_train} new rows "
                    f"+ rehearsal, {p.samples} samples in {p.seconds:.1f} s"
                )
            case ev.RetrainFailed() as p:
                out.append(f"  {p.trigger_id}: FAILED — {p.reason}")
    return out


def _gates(got: list[Event]) -> list[str]:
    out = ["Gate decisions:"]
    for e in got:
        p = e.payload
        if not isinstance(p, ev.Gate):
            continue
        verdict = "PASSED → promoted" if e.kind == ev.GATE_PASSED else "FAILED → champion stays"
        out.append(f"  {p.candidate} vs {p.champion}: {verdict}")
        for c in p.checks:
            champ = "-" if c.champion is None else f"{c.champion:.3f}"
            cand = "-" if c.candidate is None else f"{c.candidate:.3f}"
            out.append(
                f"    {'pass' if c.passed else 'FAIL'}  {c.name:<12} champion {champ}  "
                f"candidate {cand}  ({c.threshold})"
            )
    return out


def run_summary(cfg: DriftloopConfig, after_id: int = 0) -> str:
    db = Database.for_state_dir(cfg.state_dir, cfg.database_url)
    events = EventLog(db)
    registry = Registry(db, cfg.state_dir / "models", events)
    got = [e for e in events.list(after_id=after_id)]
    truth = _true_drifts(cfg, db)
    out = ["", "=" * 72, "driftloop — run summary", "=" * 72]

    drifts = [e.payload for e in got if isinstance(e.payload, ev.DriftDetected)]
    out.append(f"Drift detected ({len(drifts)}):")
    for d in drifts:
        row = int(d.row)
        before = [t for t in truth if t <= row]
        lag = (
            f"{row - before[-1]} rows after the true drift at row {before[-1]}"
            if before
            else ("no true drift before it" if truth else "")
        )
        out.append(f"  row {row:>6}  {d.detector:<8} on {d.signal:<9} {lag:<44} → {d.action}")
    if truth:
        out.append(f"  (true drifts at rows {', '.join(map(str, truth))})")
    out += _retrains(got)
    out += _gates(got)

    names, table = accuracy_matrix(cfg, registry)
    champion = registry.champion()
    if names:
        out.append("Accuracy on each distribution (clean held-out samples), per version:")
        width = max(12, *(len(n) + 2 for n in names))
        out.append(f"  {'version':<10}{'status':<10}" + "".join(f"{n:>{width}}" for n in names))
        for version, status, accs in table:
            mark = "*" if version == champion else " "
            out.append(
                f" {mark}{version:<10}{status:<10}" + "".join(f"{a:>{width}.3f}" for a in accs)
            )
    out.append(f"Champion: {champion}")
    db.dispose()
    return "\n".join(out)
