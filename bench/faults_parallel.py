"""Run several fault campaigns (bench/faults.py) side by side and merge their trials.

Each campaign is its own process with its own daemon, state directory, ports and seed,
so K of them reach K times the trials in the same wall time on a machine with the cores
for it. Their trials are merged into one result (numbered anew, each keeping its
campaign's seed) for the one table and JSON that bench/faults.py prints and writes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _command(args: argparse.Namespace, seed: int, trials: int, out: Path) -> list[str]:
    return [
        sys.executable,
        str(HERE / "faults.py"),
        "--trials", str(trials),
        "--phase-timeout", str(args.phase_timeout),
        "--max-minutes", str(args.max_minutes),
        "--seed", str(seed),
        "--json", str(out),
    ]  # fmt: skip


def run_parallel(args: argparse.Namespace) -> dict[str, Any]:
    """``args.parallel`` campaigns of ``args.trials / args.parallel`` trials each, merged."""
    each = -(-args.trials // args.parallel)
    tmp = Path(tempfile.mkdtemp(prefix="driftloop-faults-parallel-"))
    runs = []
    for k in range(args.parallel):
        seed = args.seed + k
        out, log = tmp / f"campaign-{seed}.json", tmp / f"campaign-{seed}.log"
        with log.open("w") as sink:
            proc = subprocess.Popen(_command(args, seed, each, out), stdout=sink, stderr=sink)
        runs.append((seed, proc, out, log))
    return _merge([(seed, proc.wait(), out, log) for seed, proc, out, log in runs])


def _merge(finished: list[tuple[int, int, Path, Path]]) -> dict[str, Any]:
    trials: list[dict[str, Any]] = []
    campaigns = []
    for seed, code, out, log in finished:
        part = json.loads(out.read_text()) if out.exists() else {"trials": []}
        for t in part["trials"]:
            trials.append({**t, "trial": len(trials), "campaign_seed": seed})
        campaigns.append(
            {
                "seed": seed,
                "exit_code": code,
                "trials": len(part["trials"]),
                "rows_acknowledged": part.get("rows_acknowledged", 0),
                "rows_sent": part.get("rows_sent", 0),
                "wall_s": part.get("wall_s"),
                "log_tail": log.read_text()[-600:],
            }
        )
    return {
        "campaigns": campaigns,
        "rows_acknowledged": sum(c["rows_acknowledged"] for c in campaigns),
        "rows_sent": sum(c["rows_sent"] for c in campaigns),
        "wall_s": max((c["wall_s"] or 0) for c in campaigns),
        "trials": trials,
    }
