"""``driftloop`` — the command line.

Every command finds its state through ``--config`` or ``--state-dir``; every error is one
line on stderr and a non-zero exit (2 for bad usage or input, 1 for a refused action).
The parser is :mod:`runtime.cli.parser`; each command's body lives in the module of its
group (:mod:`~runtime.cli.loop`, :mod:`~runtime.cli.state`, :mod:`~runtime.cli.review`,
:mod:`~runtime.cli.handoff`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from runtime.cli.common import CliError
from runtime.cli.handoff import cmd_adopt, cmd_export
from runtime.cli.loop import cmd_bootstrap, cmd_run, cmd_validate
from runtime.cli.parser import build_parser
from runtime.cli.review import cmd_backtest, cmd_replay, cmd_report, cmd_serve
from runtime.cli.state import (
    cmd_approve,
    cmd_events,
    cmd_models,
    cmd_reject,
    cmd_rollback,
    cmd_status,
)

log = logging.getLogger(__name__)

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
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

    args = build_parser().parse_args(argv)
    setup_logging()
    try:
        code: int = COMMANDS[args.command](args)
        sys.stdout.flush()  # a reader that went away shows here, not as noise at exit
        return code
    except CliError as err:
        print(f"driftloop {args.command}: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`driftloop events | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        return 0
    except Exception as err:  # anything else: still one line, details in the log
        if _config_error(err):
            print(f"driftloop {args.command}: {err}", file=sys.stderr)
            return getattr(err, "code", 2)
        log.debug("unhandled error", exc_info=True)
        first = str(err).splitlines()[0] if str(err) else ""
        print(f"driftloop {args.command}: {type(err).__name__}: {first}", file=sys.stderr)
        return 1


def _config_error(err: Exception) -> bool:
    """Whether ``err`` is a :class:`runtime.config.ConfigError`, without importing the
    config (it imports torch; ``run`` takes the state's lock before that)."""
    config = sys.modules.get("runtime.config")
    return config is not None and isinstance(err, config.ConfigError)


if __name__ == "__main__":
    raise SystemExit(main())
