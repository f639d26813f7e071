"""Commands over a state: ``status``, ``events``, ``models``, ``rollback``, ``approve``,
``reject``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from runtime.cli.common import CliError, open_state, reason

if TYPE_CHECKING:
    from runtime.config import DriftloopConfig


def cmd_events(args: argparse.Namespace) -> int:
    from runtime.review.text import event_line

    if args.limit is not None and args.limit < 1:
        raise CliError(f"--limit: must be a positive number of events, got {args.limit}")
    _, _, db, events, _ = open_state(args)
    kinds = _expand_kinds(args.kind)
    since = _iso(args.since) if args.since else None
    if since is not None and not args.wall_clock:
        since = _data_since(db, since)
    got = [] if since == _NOTHING else events.list(kinds=kinds, since=since,
                                                   model_version=args.model)
    if args.limit:
        got = got[-args.limit :]
    for e in got:
        print(json.dumps(e.to_dict(), sort_keys=False) if args.json else event_line(e))
    db.dispose()
    return 0


_NOTHING = "no row that recent"


def _data_since(db: Any, since: str) -> str:
    """``--since`` in the data's time where rows carry one: when the first row of that
    time or later was stored (:data:`_NOTHING` when none is); as given otherwise."""
    import sys

    from runtime.store.rows import has_times, stored_since

    if not has_times(db):
        return since
    stored = stored_since(db, since)
    if stored is None:
        print(f"no row has an event time at or after {since}", file=sys.stderr)
        return _NOTHING
    return stored


def _expand_kinds(given: Sequence[str]) -> list[str] | None:
    from runtime.store import events as ev

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

    cfg, state_dir, db, events, registry = open_state(args)
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

    _, _, db, _, registry = open_state(args)
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
    from runtime.store import events as ev

    _, _, db, _, registry = open_state(args)
    before = registry.champion()
    try:
        event = registry.rollback(args.version, reason="manual: driftloop rollback")
    except (ValueError, KeyError) as err:
        raise CliError(reason(err), code=1) from None
    assert isinstance(event.payload, ev.ModelRolledBack)  # rollback() records its own event
    print(
        f"champion: {before} → {event.payload.to} (event {event.id}); "
        "a running daemon re-baselines on it at its next step"
    )
    db.dispose()
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    from runtime.promotion.approval import ReviewError, approve

    _, _, db, events, registry = open_state(args)
    before = registry.champion()
    try:
        event = approve(registry, events, args.version)
    except (ReviewError, ValueError, KeyError) as err:
        raise CliError(reason(err), code=1) from None
    print(
        f"champion: {before} → {args.version} (event {event.id}); "
        "a running daemon adopts it at its next step"
    )
    db.dispose()
    return 0


def cmd_reject(args: argparse.Namespace) -> int:
    from runtime.promotion.approval import ReviewError, reject

    _, _, db, events, registry = open_state(args)
    try:
        event = reject(registry, events, args.version, args.reason)
    except (ReviewError, ValueError, KeyError) as err:
        raise CliError(reason(err), code=1) from None
    print(f"{args.version} refused (event {event.id}); champion stays {registry.champion()}")
    db.dispose()
    return 0
