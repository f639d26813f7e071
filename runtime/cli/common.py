"""What the commands share: the one-line error, loading the config, opening a state."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.config import DriftloopConfig


class CliError(Exception):
    """A user-facing error: printed as one line."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def load_config(path: Path) -> DriftloopConfig:
    """The config, imported lazily: ``--help`` must not pay for torch."""
    from runtime.config import load_config as load

    return load(path)


def config_or_state(args: argparse.Namespace) -> tuple[DriftloopConfig | None, Path, str | None]:
    if getattr(args, "config", None) is not None:
        cfg = load_config(args.config)
        return cfg, cfg.state_dir, cfg.database_url
    if getattr(args, "state_dir", None) is not None:
        return None, args.state_dir.resolve(), None
    raise CliError("give --config CONFIG or --state-dir DIR to find the state")


def open_state(args: argparse.Namespace) -> Any:
    """``(cfg, state_dir, db, events, registry)`` of the state ``args`` name."""
    from runtime.store.db import Database
    from runtime.store.events import EventLog
    from runtime.store.versions import Registry

    cfg, state_dir, url = config_or_state(args)
    if url is None and not (state_dir / "driftloop.db").exists():
        raise CliError(f"no driftloop state in {state_dir} (has the daemon run?)")
    db = Database.for_state_dir(state_dir, url)
    db.create_all()
    events = EventLog(db)
    return cfg, state_dir, db, events, Registry(db, state_dir / "models", events)


def reason(err: Exception) -> str:
    """An exception's message; a KeyError's without the quotes its str() adds."""
    if isinstance(err, KeyError) and len(err.args) == 1:
        return str(err.args[0])
    return str(err)
