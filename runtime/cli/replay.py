"""``driftloop replay``: the whole loop over a logged stream, offline, beside baselines."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    rp = sub.add_parser(
        "replay",
        help="run the whole loop offline over a logged stream, beside never-retrain and "
        "periodic retraining",
        description="Replays the files in order through ingest, monitor, detectors, policy, "
        "retrain, gate and promotion in simulated time (a fresh temporary state; the config's "
        "state is not touched) and prints the prequential accuracy of the served model.",
    )
    rp.add_argument("--config", "-c", type=Path, required=True, help="the daemon's YAML config")
    rp.add_argument("--data", type=Path, nargs="+", required=True,
                    help="CSV or Parquet files with the schema's columns, in stream order")
    rp.add_argument("--label-delay", type=int, default=0, metavar="ROWS",
                    help="a row's label arrives this many rows after the row (default 0)")
    rp.add_argument("--retrain-rows", type=int, default=0, metavar="N",
                    help="a retrain's candidate is ready N rows after its request (default 0)")
    rp.add_argument("--row-seconds", type=float, default=1.0, metavar="S",
                    help="the stream's seconds between rows, for policy.triggers.schedule and "
                    "max_age, where the schema names no timestamp_column (default 1)")
    rp.add_argument("--batch-rows", type=int, default=100, metavar="N",
                    help="rows that arrive together (default 100)")
    rp.add_argument("--limit", type=int, metavar="N", help="only the first N rows")
    rp.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                    help="try these values of a config key (repeatable: every combination); "
                    "prints the accuracy/retrains frontier")
    rp.add_argument("--seeds", metavar="S1,S2,...",
                    help="run everything once per retrain seed (retrain.seed) and report the "
                    "loop's gain over each baseline as mean ± standard error with a verdict "
                    "(ahead / behind / within noise: 3 seeds or more); one seed is one draw")
    rp.add_argument("--plot", type=Path, metavar="OUT.png", help="accuracy over the stream")
    rp.add_argument("--json", type=Path, metavar="OUT.json", help="write the results as JSON")
    rp.add_argument("--quiet", "-q", action="store_true", help="no progress lines")


def cmd_replay(args: argparse.Namespace, cfg: Any) -> int:
    """Run the replay; ValueError (bad input) is the caller's to print as one line."""
    from runtime.replay.compare import Options, compare, summary, table
    from runtime.replay.plot import plot
    from runtime.replay.seeds import parse_seeds
    from runtime.replay.stream import LoggedStream
    from runtime.service.scheduler import next_fire

    seeds = parse_seeds(args.seeds) if args.seeds else None
    stream = LoggedStream.read(args.data, cfg.schema, limit=args.limit)
    opts = Options(args.batch_rows, args.label_delay, args.retrain_rows, args.row_seconds,
                   next_fire)
    report = None if args.quiet else (lambda line: print(line, flush=True))
    out: dict[str, Any] = {"rows": len(stream), "options": {
        k: v for k, v in asdict(opts).items() if k != "next_fire"}}
    if args.grid:
        results = _grid(cfg, stream, args.grid, opts, seeds, report, out)
    elif seeds is not None:
        results = _seeds(cfg, stream, opts, seeds, report, out)
    else:
        results = compare(cfg, stream, opts, report)
        print(table(results, f"{len(stream)} rows, first {results[0].start} train v1"))
        out["runs"] = [summary(r) for r in results]
    if args.plot:
        print(f"plot: {plot(results, args.plot)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
        print(f"json: {args.json}")
    return 0


def _grid(cfg: Any, stream: Any, specs: list[str], opts: Any, seeds: tuple[int, ...] | None,
          report: Any, out: dict[str, Any]) -> list[Any]:
    """The ``--grid`` table (on the seeds' means with ``--seeds``); returns the runs."""
    from runtime.replay.compare import grid, grid_table, run_schedule, summary
    from runtime.replay.engine import Schedule
    from runtime.replay.seeds import grid_seeds, grid_seeds_table

    never = run_schedule(cfg, stream, Schedule("never", gate=False, name="never"), opts)
    out["never"] = summary(never)
    if seeds is None:
        rows = grid(cfg, stream, specs, opts, report)
        print(grid_table(rows, never))
        out["grid"] = [{"settings": s, **summary(r)} for s, r in rows]
        return [r for _, r in rows]
    by_setting = grid_seeds(cfg, stream, specs, opts, seeds, report)
    print(grid_seeds_table(by_setting, never))
    out["grid"] = [{"settings": s, "seeds": list(seeds), "runs": [summary(r) for r in runs]}
                   for s, runs in by_setting]
    return [runs[0] for _, runs in by_setting]


def _seeds(cfg: Any, stream: Any, opts: Any, seeds: tuple[int, ...], report: Any,
           out: dict[str, Any]) -> list[Any]:
    """Each seed's table, then the loop's gains over the seeds; returns the loops."""
    from runtime.replay.compare import summary, table
    from runtime.replay.seeds import compare_seeds, gains, gains_table

    per_seed = compare_seeds(cfg, stream, opts, seeds, report)
    for seed, runs in per_seed.items():
        print(table(runs, f"seed {seed}: {len(stream)} rows, first {runs[0].start} train v1")
              + "\n")
    print(gains_table(per_seed))
    out["seeds"] = {str(s): [summary(r) for r in runs] for s, runs in per_seed.items()}
    out["gains"] = [{"baseline": g.baseline, "per_seed": list(g.per_seed), "mean": g.mean,
                     "se": g.se, "verdict": g.verdict} for g in gains(per_seed)]
    return [runs[0] for runs in per_seed.values()]
