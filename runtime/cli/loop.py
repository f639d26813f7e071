"""Commands that run the loop: ``run``, ``bootstrap``, ``validate``."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from runtime.cli.common import CliError, load_config

if TYPE_CHECKING:
    from runtime.config import DriftloopConfig


def cmd_run(args: argparse.Namespace) -> int:
    return _run(args, load_config(args.config))


def _run(args: argparse.Namespace, cfg: DriftloopConfig) -> int:
    from runtime.daemon import Daemon
    from runtime.review.summary import run_summary
    from runtime.store.lock import AlreadyRunning

    live = _live_progress(cfg) if not args.quiet and sys.stdout.isatty() else None
    out = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))
    daemon = Daemon(cfg, report=live.line if live else out)
    server = _server(daemon, cfg)
    first = daemon.events.list(descending=True, limit=1)
    start_id = first[0].id if first else 0
    try:
        if live is not None:
            from runtime.cli.progress import DaemonView

            live.attach(daemon.events, DaemonView(daemon))
            with live:
                daemon.run(until_drained=args.until_drained, server=server)
        else:
            daemon.run(until_drained=args.until_drained, server=server)
    except AlreadyRunning as err:
        raise CliError(str(err), code=1) from None
    if daemon.stop_event.is_set():  # stopped by a signal and closed: the state is saved
        _exit_now()
    if args.until_drained:
        print(run_summary(cfg, after_id=start_id))
    return 0


def _exit_now() -> None:
    """End the process without the interpreter's teardown (with torch loaded it takes
    seconds on a busy machine, and a stop must end within a few)."""
    import logging

    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(0)


def _server(daemon: Any, cfg: DriftloopConfig) -> Any:
    """The API server for ``daemon`` when ``api:`` is configured (else None)."""
    if cfg.api is None:
        return None
    from runtime.service.server import ApiServer, resolve_token

    return ApiServer(daemon, cfg.api, resolve_token(cfg.api))


def _live_progress(cfg: DriftloopConfig) -> Any:
    """The terminal's status line (rows, champion, retrain epochs) for ``run`` on a TTY."""
    from runtime.cli.progress import LiveProgress
    from runtime.intake.settings import SyntheticSourceConfig

    src = cfg.source
    total = sum(s.rows for s in src.segments) if isinstance(src, SyntheticSourceConfig) else None
    return LiveProgress(sys.stdout, total, cfg.retrain.budget.epochs)


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from runtime.daemon import Daemon
    from runtime.store.lock import AlreadyRunning
    from runtime.training.bootstrap import BootstrapError

    cfg = load_config(args.config)
    daemon = Daemon(cfg, report=lambda line: print(line, flush=True))
    try:
        version = daemon.bootstrap()
    except (AlreadyRunning, BootstrapError) as err:
        raise CliError(str(err), code=1) from None
    print(f"champion: {version}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from runtime.cli.validate import build_everything
    from runtime.config import ConfigError

    cfg = load_config(args.config)
    try:
        for line in build_everything(cfg):
            print(line)
    except ConfigError as err:  # what loads but does not build: name the file as loading does
        raise ConfigError(f"{args.config}: {err}") from None
    print(f"ok: {args.config} is valid")
    return 0
