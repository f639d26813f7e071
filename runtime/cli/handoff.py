"""Both ends of the loop: ``adopt`` a model trained elsewhere as v1, ``export`` a version."""

from __future__ import annotations

import argparse

from runtime.cli.common import CliError, load_config, open_state


def cmd_adopt(args: argparse.Namespace) -> int:
    from runtime.store.db import Database
    from runtime.store.events import EventLog
    from runtime.store.lock import AlreadyRunning, StateLock
    from runtime.store.versions import Registry
    from runtime.training.adopt import AdoptError, adopt, read_weights

    cfg = load_config(args.config)
    data = args.data or cfg.bootstrap.data
    if data is None:
        raise CliError("give --data LABELLED_ROWS (or set bootstrap.data in the config)")
    try:
        weights = read_weights(args.weights)
    except AdoptError as err:
        raise CliError(str(err)) from None
    lock = StateLock(cfg.state_dir)
    try:
        lock.acquire()
    except AlreadyRunning as err:
        raise CliError(str(err), code=1) from None
    db = Database.for_state_dir(cfg.state_dir, cfg.database_url, synchronous=cfg.sqlite_synchronous)
    try:
        db.create_all()
        events = EventLog(db)
        registry = Registry(db, cfg.state_dir / "models", events)
        version = adopt(cfg, db, events, registry, weights, data,
                        report=lambda line: print(line, flush=True))
    except AdoptError as err:
        raise CliError(str(err), code=1) from None
    except ValueError as err:  # the config's model cannot be built (factory import, ...)
        raise CliError(str(err).splitlines()[0], code=1) from None
    finally:
        db.dispose()
        lock.release()
    print(f"champion: {version} (adopted from {args.weights}, sha256 {weights.sha256})")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from runtime.handoff.export import MANIFEST, ExportError, export_version

    args.state_dir = None
    cfg, _, db, _, registry = open_state(args)
    assert cfg is not None  # --config is required
    version = registry.champion() if args.version == "champion" else args.version
    if version is None:
        raise CliError("there is no champion yet", code=1)
    try:
        done = export_version(cfg, registry, version, list(dict.fromkeys(args.format)), args.out,
                              opset=cfg.export.opset if cfg.export else 17)
    except ExportError as err:
        raise CliError(str(err), code=1) from None
    finally:
        db.dispose()
    for fmt, info in done.manifest["formats"].items():
        print(f"{fmt:<12} {info['file']:<22} max |diff| {info['max_abs_diff']:.2e} on "
              f"{done.manifest['checked_on']['rows']} golden rows  {info['seconds']:.2f} s")
    print(f"wrote {args.out / MANIFEST} ({version})")
    return 0
