"""The daemon's handoff: the export publisher and the hook dispatcher, as configured.

Both run in threads of their own and read only what is committed (the champion
pointer, the event log), so the daemon's loop never waits on them and a crash loses
nothing: after a restart the publisher exports the champion if ``current`` lags, and
the dispatcher delivers what the outbox still owes.
"""

from __future__ import annotations

from collections.abc import Callable

from runtime.config import DriftloopConfig
from runtime.handoff.dispatcher import Dispatcher
from runtime.handoff.publisher import Publisher
from runtime.store.db import Database
from runtime.store.events import EventLog
from runtime.store.versions import Registry

__all__ = ["Handoff"]


class Handoff:
    """``export:`` and ``hooks:`` of ``cfg`` (either may be absent: then it does nothing).

    Building it checks what would make them fail later (a hook's secret unset); :meth:`start`
    checks the export directory can be written. Both errors are one line.
    """

    def __init__(
        self,
        cfg: DriftloopConfig,
        db: Database,
        events: EventLog,
        registry: Registry,
        *,
        is_leader: Callable[[], bool] = lambda: True,
    ) -> None:
        self.publisher = (
            Publisher(cfg, registry, is_leader=is_leader) if cfg.export is not None else None
        )
        self.dispatcher = (
            Dispatcher(db, events, cfg.hooks, is_leader=is_leader) if cfg.hooks else None
        )

    def start(self) -> None:
        if self.publisher is not None:
            self.publisher.start()
        if self.dispatcher is not None:
            self.dispatcher.start()

    def wake(self) -> None:
        """Look now: the champion or the event log changed."""
        if self.publisher is not None:
            self.publisher.wake()
        if self.dispatcher is not None:
            self.dispatcher.wake()

    def stop(self) -> None:
        if self.publisher is not None:
            self.publisher.stop()
        if self.dispatcher is not None:
            self.dispatcher.stop()
