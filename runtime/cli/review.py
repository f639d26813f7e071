"""Commands that look back: ``report``, ``backtest``, ``replay``, ``serve``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from runtime.cli.common import CliError, config_or_state, load_config

if TYPE_CHECKING:
    from runtime.config import DriftloopConfig


def cmd_report(args: argparse.Namespace) -> int:
    from runtime.review.collect import open_review
    from runtime.review.page import write_report

    if args.out.is_dir():
        raise CliError(f"--out: {args.out} is a directory; give the HTML file's path")
    cfg, state_dir, url = config_or_state(args)
    if url is None and not (state_dir / "driftloop.db").exists():
        raise CliError(f"no driftloop state in {state_dir} (has the daemon run?)")
    review = open_review(cfg, state_dir, url, matrix=not args.no_matrix)
    path = write_report(review, args.out)
    print(
        f"wrote {path}: {len(review.chapters)} decisions, {review.total_events} events, "
        f"{len(review.versions)} versions; champion {review.champion}"
    )
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    cfg = load_config(args.config) if args.config else None
    try:
        return _backtest(args, cfg)
    except ValueError as err:
        raise CliError(str(err)) from None


def _backtest(args: argparse.Namespace, cfg: DriftloopConfig | None) -> int:
    from runtime.monitoring.backtest import backtest_command

    print(
        backtest_command(
            args.data, cfg, column=args.column, truth=args.truth, as_json=args.json, plot=args.plot
        )
    )
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from runtime.cli import replay as replay_cli

    try:
        return replay_cli.cmd_replay(args, load_config(args.config))
    except ValueError as err:
        raise CliError(str(err)) from None


def cmd_serve(args: argparse.Namespace) -> int:
    from runtime.service.server import ServerError, serve_review

    cfg = load_config(args.config)
    if cfg.database_url is None and not (cfg.state_dir / "driftloop.db").exists():
        raise CliError(f"no driftloop state in {cfg.state_dir} (has the daemon run?)")
    try:
        serve_review(cfg, args.host, args.port)
    except ServerError as err:
        raise CliError(str(err), code=1) from None
    return 0
