"""``driftloop`` — the command line.

Every command finds its state through ``--config`` or ``--state-dir``; every error is one
line on stderr and a non-zero exit (2 for bad usage or input, 1 for a refused action).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.cli import replay as replay_cli
from runtime.store import events as ev

if TYPE_CHECKING:
    from runtime.config import DriftloopConfig

log = logging.getLogger(__name__)


def load_config(path: Path) -> DriftloopConfig:
    """The config, imported lazily: ``--help`` must not pay for torch."""
    from runtime.config import load_config as load

    return load(path)


class CliError(Exception):
    """A user-facing error: printed as one line."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="driftloop",
        description="A continual-learning runtime: watch a model's data, detect drift, "
        "fine-tune with rehearsal, gate, promote.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def state_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", "-c", type=Path, help="the daemon's YAML config")
        sp.add_argument("--state-dir", type=Path, help="the state directory (instead of --config)")

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

    s = sub.add_parser("status", help="champion, rows, pending retrains, daemon running or not")
    state_args(s)
    s.add_argument("--json", action="store_true")

    e = sub.add_parser("events", help="the event log")
    state_args(e)
    e.add_argument("--json", action="store_true", help="one JSON object a line")
    e.add_argument(
        "--kind",
        action="append",
        default=[],
        help="only events of this kind (repeatable; a prefix like 'gate.' works)",
    )
    e.add_argument("--since", help="only events at or after this ISO time (e.g. 2026-11-26T10:00)")
    e.add_argument("--model", help="only events about this model version")
    e.add_argument("--limit", type=int, help="only the last N events")

    m = sub.add_parser("models", help="model versions with lineage")
    state_args(m)
    m.add_argument("--json", action="store_true")
    m.add_argument("--lineage", action="store_true", help="show the champion's ancestry as a chain")

    ap = sub.add_parser("approve", help="promote a candidate that passed the gate (manual mode)")
    state_args(ap)
    ap.add_argument("version", help="the candidate awaiting approval")
    rj = sub.add_parser("reject", help="refuse a candidate awaiting approval (manual mode)")
    state_args(rj)
    rj.add_argument("version", help="the candidate awaiting approval")
    rj.add_argument("--reason", default="", help="why, in a few words (recorded in the event)")

    rb = sub.add_parser("rollback", help="make an earlier promoted version the champion again")
    state_args(rb)
    rb.add_argument(
        "version", nargs="?", help="the version to restore (default: the previous champion)"
    )

    b = sub.add_parser("bootstrap", help="train the first model (v1) from the initial data")
    b.add_argument("--config", "-c", type=Path, required=True)

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
    state_args(rp)
    rp.add_argument("--out", "-o", type=Path, default=Path("report.html"), help="the HTML file")
    rp.add_argument(
        "--no-matrix", action="store_true", help="skip evaluating every version (faster)"
    )
    _handoff_parsers(sub)
    return p


# -- both ends of the loop: adopt a model, hand champions back (issue 19) ------------------
def _handoff_parsers(sub: Any) -> None:
    """``adopt`` and ``export``."""
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
    cfg, _, db, _, registry = _open_state(args)
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


def _config_or_state(args: argparse.Namespace) -> tuple[DriftloopConfig | None, Path, str | None]:
    if getattr(args, "config", None) is not None:
        cfg = load_config(args.config)
        return cfg, cfg.state_dir, cfg.database_url
    if getattr(args, "state_dir", None) is not None:
        return None, args.state_dir.resolve(), None
    raise CliError("give --config CONFIG or --state-dir DIR to find the state")


def _open_state(args: argparse.Namespace) -> Any:
    from runtime.store.db import Database
    from runtime.store.events import EventLog
    from runtime.store.versions import Registry

    cfg, state_dir, url = _config_or_state(args)
    if url is None and not (state_dir / "driftloop.db").exists():
        raise CliError(f"no driftloop state in {state_dir} (has the daemon run?)")
    db = Database.for_state_dir(state_dir, url)
    db.create_all()
    events = EventLog(db)
    return cfg, state_dir, db, events, Registry(db, state_dir / "models", events)


def cmd_run(args: argparse.Namespace) -> int:
    from runtime.daemon import Daemon
    from runtime.review.summary import run_summary
    from runtime.store.lock import AlreadyRunning

    cfg = load_config(args.config)
    live = _live_progress(cfg) if not args.quiet and sys.stdout.isatty() else None
    out = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))
    daemon = Daemon(cfg, report=live.line if live else out)
    first = daemon.events.list(descending=True, limit=1)
    start_id = first[0].id if first else 0
    try:
        if live is not None:
            from runtime.cli.progress import DaemonView

            live.attach(daemon.events, DaemonView(daemon))
            with live:
                daemon.run(until_drained=args.until_drained)
        else:
            daemon.run(until_drained=args.until_drained)
    except AlreadyRunning as err:
        raise CliError(str(err), code=1) from None
    if args.until_drained:
        print(run_summary(cfg, after_id=start_id))
    return 0


def _live_progress(cfg: DriftloopConfig) -> Any:
    """The terminal's status line (rows, champion, retrain epochs) for ``run`` on a TTY."""
    from runtime.cli.progress import LiveProgress
    from runtime.intake.settings import SyntheticSourceConfig

    src = cfg.source
    total = sum(s.rows for s in src.segments) if isinstance(src, SyntheticSourceConfig) else None
    return LiveProgress(sys.stdout, total, cfg.retrain.budget.epochs)


def cmd_report(args: argparse.Namespace) -> int:
    from runtime.review.collect import open_review
    from runtime.review.page import write_report

    if args.out.is_dir():
        raise CliError(f"--out: {args.out} is a directory; give the HTML file's path")
    cfg, state_dir, url = _config_or_state(args)
    if url is None and not (state_dir / "driftloop.db").exists():
        raise CliError(f"no driftloop state in {state_dir} (has the daemon run?)")
    review = open_review(cfg, state_dir, url, matrix=not args.no_matrix)
    path = write_report(review, args.out)
    print(
        f"wrote {path}: {len(review.chapters)} decisions, {review.total_events} events, "
        f"{len(review.versions)} versions; champion {review.champion}"
    )
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


def cmd_events(args: argparse.Namespace) -> int:
    from runtime.review.text import event_line

    if args.limit is not None and args.limit < 1:
        raise CliError(f"--limit: must be a positive number of events, got {args.limit}")
    _, _, db, events, _ = _open_state(args)
    kinds = _expand_kinds(args.kind)
    since = _iso(args.since) if args.since else None
    got = events.list(kinds=kinds, since=since, model_version=args.model)
    if args.limit:
        got = got[-args.limit :]
    for e in got:
        print(json.dumps(e.to_dict(), sort_keys=False) if args.json else event_line(e))
    db.dispose()
    return 0


def _reason(err: Exception) -> str:
    """An exception's message; a KeyError's without the quotes its str() adds."""
    if isinstance(err, KeyError) and len(err.args) == 1:
        return str(err.args[0])
    return str(err)


def _expand_kinds(given: Sequence[str]) -> list[str] | None:
    if not given:
        return None
    out: list[str] = []
    for item in given:
        for k in item.split(","):
            k = k.strip()
            matches = sorted(x for x in ev.KINDS if x == k or (k.endswith(".") and x.startswith(k)))
            if not matches:
                raise CliError(f"unknown event kind {k!r} (known: {', '.join(sorted(ev.KINDS))})")
            out.extend(matches)
    return out


def _iso(text: str) -> str:
    from datetime import UTC, datetime

    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"--since: not an ISO time: {text!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def cmd_status(args: argparse.Namespace) -> int:
    from runtime.review.text import status_dict, status_text

    cfg, state_dir, db, events, registry = _open_state(args)
    st = status_dict(state_dir, db, events, registry)
    if cfg is not None:
        st.update(_broker_lag(cfg))
    print(json.dumps(st, indent=2) if args.json else status_text(st))
    db.dispose()
    return 0


def _broker_lag(cfg: DriftloopConfig) -> dict[str, Any]:
    """``source_lag`` asked of a Kafka or NATS broker (``None`` for other sources), or
    ``source_lag_error`` when it cannot be asked: status still answers."""
    from runtime.intake.kinds import broker_lag
    from runtime.intake.redis_source import BrokerError

    try:
        return {"source_lag": broker_lag(cfg.source)}
    except BrokerError as err:
        return {"source_lag": None, "source_lag_error": str(err)}


def cmd_models(args: argparse.Namespace) -> int:
    from runtime.review.text import file_problems, lineage_text, models_text

    _, _, db, _, registry = _open_state(args)
    versions = registry.list()
    if args.json:
        for v in versions:
            print(
                json.dumps(
                    {
                        "version": v.version,
                        "parent": v.parent,
                        "status": v.status,
                        "created_at": v.created_at,
                        "meta": v.meta,
                    }
                )
            )
    elif args.lineage:
        print(lineage_text(versions, registry.champion()))
    else:
        print(models_text(versions, registry.champion(), file_problems(registry, versions)))
    db.dispose()
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    _, _, db, _, registry = _open_state(args)
    before = registry.champion()
    try:
        event = registry.rollback(args.version, reason="manual: driftloop rollback")
    except (ValueError, KeyError) as err:
        raise CliError(_reason(err), code=1) from None
    print(
        f"champion: {before} → {event.payload.get('to')} (event {event.id}); "
        "a running daemon re-baselines on it at its next step"
    )
    db.dispose()
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    from runtime.promotion.approval import ReviewError, approve

    _, _, db, events, registry = _open_state(args)
    before = registry.champion()
    try:
        event = approve(registry, events, args.version)
    except (ReviewError, ValueError, KeyError) as err:
        raise CliError(_reason(err), code=1) from None
    print(
        f"champion: {before} → {args.version} (event {event.id}); "
        "a running daemon adopts it at its next step"
    )
    db.dispose()
    return 0


def cmd_reject(args: argparse.Namespace) -> int:
    from runtime.promotion.approval import ReviewError, reject

    _, _, db, events, registry = _open_state(args)
    try:
        event = reject(registry, events, args.version, args.reason)
    except (ReviewError, ValueError, KeyError) as err:
        raise CliError(_reason(err), code=1) from None
    print(f"{args.version} refused (event {event.id}); champion stays {registry.champion()}")
    db.dispose()
    return 0


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


COMMANDS = {
    "run": cmd_run,
    "validate": cmd_validate,
    "status": cmd_status,
    "events": cmd_events,
    "models": cmd_models,
    "rollback": cmd_rollback,
    "approve": cmd_approve,
    "reject": cmd_reject,
    "bootstrap": cmd_bootstrap,
    "backtest": cmd_backtest,
    "report": cmd_report,
    "serve": cmd_serve,
    "adopt": cmd_adopt,
    "export": cmd_export,
    "replay": cmd_replay,
}


def main(argv: Sequence[str] | None = None) -> int:
    from runtime.service.logs import setup_logging

    args = _parser().parse_args(argv)
    setup_logging()
    from runtime.config import ConfigError

    try:
        code: int = COMMANDS[args.command](args)
        sys.stdout.flush()  # a reader that went away shows here, not as noise at exit
        return code
    except (CliError, ConfigError) as err:
        print(f"driftloop {args.command}: {err}", file=sys.stderr)
        return getattr(err, "code", 2)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`driftloop events | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        return 0
    except Exception as err:  # anything else: still one line, details in the log
        log.debug("unhandled error", exc_info=True)
        first = str(err).splitlines()[0] if str(err) else ""
        print(f"driftloop {args.command}: {type(err).__name__}: {first}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
