"""The ``driftloop`` argument parser: one function per group of commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from runtime.cli import replay as replay_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="driftloop",
        description="A continual-learning runtime: watch a model's data, detect drift, "
        "fine-tune with rehearsal, gate, promote.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _loop_parsers(sub)
    _state_parsers(sub)
    _review_parsers(sub)
    _handoff_parsers(sub)
    return p


def _state_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--config", "-c", type=Path, help="the daemon's YAML config")
    sp.add_argument("--state-dir", type=Path, help="the state directory (instead of --config)")


def _loop_parsers(sub: Any) -> None:
    """``run``, ``validate``, ``bootstrap``."""
    r = sub.add_parser("run", help="run the daemon in the foreground")
    r.add_argument("--config", "-c", type=Path, required=True, help="the daemon's YAML config")
    r.add_argument(
        "--until-drained",
        action="store_true",
        help="stop when the source is exhausted and no retrain is pending",
    )
    r.add_argument("--quiet", "-q", action="store_true", help="no progress lines")

    v = sub.add_parser("validate", help="check a config and build everything without starting")
    v.add_argument("config", type=Path)


def _state_parsers(sub: Any) -> None:
    """``status``, ``events``, ``models``, ``approve``, ``reject``, ``rollback``."""
    s = sub.add_parser("status", help="champion, rows, pending retrains, daemon running or not")
    _state_args(s)
    s.add_argument("--json", action="store_true")

    e = sub.add_parser("events", help="the event log")
    _state_args(e)
    e.add_argument("--json", action="store_true", help="one JSON object a line")
    e.add_argument(
        "--kind",
        action="append",
        default=[],
        help="only events of this kind (repeatable; a prefix like 'gate.' works)",
    )
    e.add_argument("--since", help="only events at or after this ISO time (e.g. 2026-11-26T10:00); "
                   "when rows carry schema.timestamp_column, a time of the data: the events "
                   "from when its first row of that time or later was stored")
    e.add_argument("--wall-clock", action="store_true",
                   help="--since is the events' own time even when rows carry a timestamp")
    e.add_argument("--model", help="only events about this model version")
    e.add_argument("--limit", type=int, help="only the last N events")

    m = sub.add_parser("models", help="model versions with lineage")
    _state_args(m)
    m.add_argument("--json", action="store_true")
    m.add_argument("--lineage", action="store_true", help="show the champion's ancestry as a chain")

    ap = sub.add_parser("approve", help="promote a candidate that passed the gate (manual mode)")
    _state_args(ap)
    ap.add_argument("version", help="the candidate awaiting approval")
    rj = sub.add_parser("reject", help="refuse a candidate awaiting approval (manual mode)")
    _state_args(rj)
    rj.add_argument("version", help="the candidate awaiting approval")
    rj.add_argument("--reason", default="", help="why, in a few words (recorded in the event)")

    rb = sub.add_parser("rollback", help="make an earlier promoted version the champion again")
    _state_args(rb)
    rb.add_argument(
        "version", nargs="?", help="the version to restore (default: the previous champion)"
    )

    b = sub.add_parser("bootstrap", help="train the first model (v1) from the initial data")
    b.add_argument("--config", "-c", type=Path, required=True)


def _review_parsers(sub: Any) -> None:
    """``backtest``, ``serve``, ``report``."""
    bt = sub.add_parser("backtest", help="replay a logged stream through the detectors")
    bt.add_argument("--data", type=Path, required=True, help="CSV or Parquet file")
    bt.add_argument("--config", "-c", type=Path, help="use this config's detectors")
    bt.add_argument("--column", help="the column to watch (univariate default)")
    bt.add_argument("--truth", type=Path, help="JSON list of true drift row indices")
    bt.add_argument("--json", action="store_true")
    bt.add_argument("--plot", type=Path, help="write a PNG of the signal with the alarms")
    sv = sub.add_parser("serve", help="serve the read-only review page (/ui) over a state")
    sv.add_argument("--config", "-c", type=Path, required=True)
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8765)

    rp = sub.add_parser("report", help="the review page as one self-contained HTML file")
    _state_args(rp)
    rp.add_argument("--out", "-o", type=Path, default=Path("report.html"), help="the HTML file")
    rp.add_argument(
        "--no-matrix", action="store_true", help="skip evaluating every version (faster)"
    )


def _handoff_parsers(sub: Any) -> None:
    """Both ends of the loop: ``adopt`` a model trained elsewhere, ``export`` champions."""
    ad = sub.add_parser("adopt", help="make a model trained elsewhere v1 (instead of bootstrap)")
    ad.add_argument("--config", "-c", type=Path, required=True, help="the daemon's YAML config")
    ad.add_argument(
        "--weights", type=Path, required=True,
        help="safetensors file or torch.save'd state dict of the configured model",
    )
    ad.add_argument(
        "--data", type=Path,
        help="labelled rows (CSV, Parquet, JSON lines) for v1's golden set, reference window "
        "and rehearsal buffer (default: bootstrap.data)",
    )
    replay_cli.add_parser(sub)
    ex = sub.add_parser("export", help="write a version as safetensors / TorchScript / ONNX")
    ex.add_argument("--config", "-c", type=Path, required=True, help="the daemon's YAML config")
    ex.add_argument("version", help="the version to export (e.g. v3; 'champion' for the champion)")
    ex.add_argument(
        "--format", "-f", action="append", required=True,
        choices=["safetensors", "torchscript", "onnx"], help="repeatable",
    )
    ex.add_argument("--out", "-o", type=Path, required=True,
                    help="directory for the files and manifest.json")
