"""Commands that run the loop: ``run``, ``bootstrap``, ``validate``.

``run`` and ``bootstrap`` take the state's lock from a first, light read of the config
(YAML only) before importing torch and the rest: a second daemon on the same state refuses
at once instead of after its imports.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from runtime.cli.common import CliError, load_config
from runtime.store.lock import AlreadyRunning, StateLock, default_instance, lock_dir

if TYPE_CHECKING:
    from runtime.config import DriftloopConfig


def take_lock(config: Path) -> StateLock | None:
    """The lock of the state ``config`` names, taken; None when the file does not read as
    a config with a ``state_dir`` (loading it then says why). Raises :class:`CliError`
    when another daemon holds it."""
    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("state_dir"), str):
        return None
    state_dir = Path(data["state_dir"])
    if not state_dir.is_absolute():
        state_dir = (config.resolve().parent / state_dir).resolve()
    leader = data.get("leader")
    instance = None
    if leader is not None:
        named = leader.get("instance") if isinstance(leader, dict) else None
        instance = named if isinstance(named, str) and named else default_instance()
    lock = StateLock(lock_dir(state_dir, instance))
    try:
        lock.acquire()
    except AlreadyRunning as err:
        raise CliError(str(err), code=1) from None
    return lock


def _checked(lock: StateLock | None, cfg: DriftloopConfig) -> StateLock | None:
    """``lock`` if it is the one the loaded config's daemon takes, else None (released)."""
    if lock is None:
        return None
    instance = None if cfg.leader is None else cfg.leader.instance or default_instance()
    if lock.path == lock_dir(cfg.state_dir, instance) / "lock":
        return lock
    lock.release()
    return None


def cmd_run(args: argparse.Namespace) -> int:
    early = take_lock(args.config)
    try:
        cfg = load_config(args.config)
        return _run(args, cfg, _checked(early, cfg))
    finally:
        if early is not None:
            early.release()  # the daemon released it on closing; here on an error before


def _run(args: argparse.Namespace, cfg: DriftloopConfig, lock: StateLock | None) -> int:
    from runtime.daemon import Daemon
    from runtime.review.summary import run_summary

    live = _live_progress(cfg) if not args.quiet and sys.stdout.isatty() else None
    out = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))
    daemon = Daemon(cfg, report=live.line if live else out, lock=lock)
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
    early = take_lock(args.config)
    try:
        return _bootstrap(args, early)
    finally:
        if early is not None:
            early.release()


def _bootstrap(args: argparse.Namespace, early: StateLock | None) -> int:
    from runtime.daemon import Daemon
    from runtime.training.bootstrap import BootstrapError

    cfg = load_config(args.config)
    daemon = Daemon(cfg, report=lambda line: print(line, flush=True), lock=_checked(early, cfg))
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
