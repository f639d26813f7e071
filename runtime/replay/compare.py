"""The replay's comparison: the config's loop beside never-retrain and periodic schedules.

:func:`compare` runs the loop as configured, then v1 never retrained, then the same
retrain job every ``n`` rows without the gate, at the loop's number of retrains and at
twice that (what drift-triggered retraining must beat: the same accuracy for fewer
retrains). :func:`grid` runs the loop over the product of a few settings and marks the
accuracy/retrains frontier: the settings no other setting beats on both.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from runtime.config import ConfigError, DriftloopConfig, parse_config
from runtime.replay.clock import NextFireFactory, interval_next_fire
from runtime.replay.engine import LoopReplay, Report, RunResult, Schedule
from runtime.replay.stream import LoggedStream


@dataclass(frozen=True)
class Options:
    batch_rows: int = 100
    label_delay: int = 0
    retrain_rows: int = 0
    row_seconds: float = 1.0  # the stream's time between rows without a timestamp column
    next_fire: NextFireFactory = field(default=interval_next_fire, compare=False)


def run_schedule(cfg: DriftloopConfig, stream: LoggedStream, schedule: Schedule,
                 opts: Options, report: Report | None = None) -> RunResult:
    return LoopReplay(cfg, stream, schedule, batch_rows=opts.batch_rows,
                      label_delay=opts.label_delay, retrain_rows=opts.retrain_rows,
                      report=report, row_seconds=opts.row_seconds,
                      next_fire=opts.next_fire).run()


def periodic(n_retrains: int, start: int, n_rows: int, name: str) -> Schedule:
    """Retrain every ``(n_rows - start) // (n_retrains + 1)`` rows, ``n_retrains`` times."""
    every = max(1, (n_rows - start) // (n_retrains + 1))
    return Schedule("periodic", every=every, limit=n_retrains, gate=False, name=name)


BASELINES = ("never retrain", "periodic, same retrains", "periodic, twice the retrains")
"""What :func:`compare`'s runs after the loop are, in order (the periodic ones only when
the loop retrained)."""


def compare(cfg: DriftloopConfig, stream: LoggedStream, opts: Options,
            report: Report | None = None) -> list[RunResult]:
    """The loop, then :data:`BASELINES`: never-retrain, and periodic at the loop's
    retrains and twice them."""
    never, same, twice = BASELINES
    loop = run_schedule(cfg, stream, Schedule("drift", name="driftloop"), opts, report)
    out = [loop, run_schedule(cfg, stream, Schedule("never", gate=False, name=never), opts)]
    k = len(loop.retrains)
    for n, label in ((k, same), (2 * k, twice)):
        if n == 0:
            continue
        sched = periodic(n, loop.start, len(stream), f"{label} (every "
                         f"{(len(stream) - loop.start) // (n + 1)} rows)")
        out.append(run_schedule(cfg, stream, sched, opts))
    return out


def summary(r: RunResult) -> dict[str, Any]:
    return {
        "name": r.name,
        r.metric: round(r.value, 4),
        "retrains": len(r.retrains),
        "promoted": r.count("promoted"),
        "refused": r.count("refused"),
        "rollbacks": r.rollbacks,
        "alarms": r.alarms,
        "by_trigger": r.by_trigger(),
        "train_seconds": round(r.train_seconds, 2),
        "wall_seconds": round(r.wall_seconds, 2),
        "retrain_rows": [{"trigger": x.trigger, "at": x.requested_at, "outcome": x.outcome,
                          "rows": x.rows, "first_row": x.first_row, "last_row": x.last_row,
                          "failed_checks": x.failed_checks}
                         for x in r.retrains],
    }


def table(results: Sequence[RunResult], title: str = "") -> str:
    """A Markdown table, one run a row."""
    metric = "MAE" if results and results[0].metric == "mae" else "accuracy"
    lines = [f"{title}" if title else "",
             f"| run | prequential {metric} | retrains | promoted | refused | train s |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.name} | {r.value:.4f} | {len(r.retrains)} | "
                     f"{r.count('promoted')} | {r.count('refused')} | {r.train_seconds:.1f} |")
    return "\n".join(line for line in lines if line)


# -- the grid ------------------------------------------------------------------------------
def parse_grid(specs: Sequence[str]) -> list[tuple[str, list[Any]]]:
    """``key=v1,v2`` (a dotted config path; list items by index, ``detectors.0.delta``)."""
    out = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        if not sep or not key or not values:
            raise ValueError(f"--grid {spec!r}: expected KEY=V1,V2 (e.g. policy.cooldown_rows="
                             "1000,3000)")
        out.append((key.strip(), [yaml.safe_load(v) for v in values.split(",")]))
    return out


def with_settings(cfg: DriftloopConfig, settings: dict[str, Any]) -> DriftloopConfig:
    """The config with dotted keys set, validated again (a bad key or value: ValueError)."""
    data = cfg.model_dump(mode="json", by_alias=True, exclude_unset=True)
    for key, value in settings.items():
        node: Any = data
        parts = key.split(".")
        for part in parts[:-1]:
            if isinstance(node, list):
                node = node[_index(node, part, key)]
            else:
                node = node.setdefault(part, {})
        if isinstance(node, list):
            node[_index(node, parts[-1], key)] = value
        elif isinstance(node, dict):
            node[parts[-1]] = value
        else:
            raise ValueError(f"--grid {key}: {'.'.join(parts[:-1])} is not a section")
    try:
        return parse_config(data, origin="--grid")
    except ConfigError as err:
        raise ValueError(str(err)) from None


def _index(node: list[Any], part: str, key: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ValueError(f"--grid {key}: {part!r} is not an index of a list of {len(node)}")
    return int(part)


def grid(cfg: DriftloopConfig, stream: LoggedStream, specs: Sequence[str], opts: Options,
         report: Report | None = None) -> list[tuple[dict[str, Any], RunResult]]:
    axes = parse_grid(specs)
    combos = [dict(zip([k for k, _ in axes], values, strict=True))
              for values in itertools.product(*[v for _, v in axes])]
    configs = [(c, with_settings(cfg, c)) for c in combos]  # every setting checked first
    out = []
    for settings, variant in configs:
        name = ", ".join(f"{k}={v}" for k, v in settings.items())
        r = run_schedule(variant, stream, Schedule("drift", name=name), opts)
        if report is not None:
            report(f"grid {name}: {r.metric} {r.value:.4f}, {len(r.retrains)} retrains")
        out.append((settings, r))
    return out


def frontier(results: Sequence[RunResult]) -> list[bool]:
    """True for a run that no other run beats on accuracy (MAE) with no more retrains."""
    return frontier_points([(len(r.retrains), r.score) for r in results])


def frontier_points(points: Sequence[tuple[float, float]]) -> list[bool]:
    """True for a (retrains, score) point no other point beats: as good a score with no
    more retrains, better on at least one."""
    marks = []
    for i, (k, s) in enumerate(points):
        beaten = any(j != i and ko <= k and so >= s and (ko < k or so > s)
                     for j, (ko, so) in enumerate(points))
        marks.append(not beaten)
    return marks


def grid_table(rows: Sequence[tuple[dict[str, Any], RunResult]], never: RunResult) -> str:
    runs = [r for _, r in rows]
    marks = frontier(runs)
    metric = "MAE" if never.metric == "mae" else "accuracy"
    lines = [f"| settings | prequential {metric} | retrains | promoted | refused | frontier |",
             "|---|---|---|---|---|---|",
             f"| never retrain | {never.value:.4f} | 0 | 0 | 0 | |"]
    order = sorted(range(len(runs)), key=lambda i: (len(runs[i].retrains), -runs[i].score))
    for i in order:
        r = runs[i]
        lines.append(f"| {r.name} | {r.value:.4f} | {len(r.retrains)} | "
                     f"{r.count('promoted')} | {r.count('refused')} | "
                     f"{'*' if marks[i] else ''} |")
    return "\n".join(lines)
