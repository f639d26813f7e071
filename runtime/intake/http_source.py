"""``source: {kind: http}``: the daemon polls nothing; the HTTP API brings the rows."""

from __future__ import annotations

from runtime.intake.sources import Batch


class HttpSource:
    """A source that never yields: rows arrive through ``POST /v1/ingest`` and the inbox."""

    name = "http"
    blocks_on_retrain = False

    @property
    def cursor(self) -> int:
        return 0

    def poll(self) -> Batch | None:
        return None

    def exhausted(self) -> bool:
        return False

    def ack(self, batch: Batch) -> None:
        """The API acknowledges its own requests once their rows are stored."""

    def close(self) -> None:
        """Holds no connection."""

    def lag(self) -> None:
        """No backlog to count here."""
        return None
