"""The source settings a config names: one model per source kind, told apart by ``kind``.

Pure pydantic models, so :mod:`runtime.config` composes them without importing any
broker client. A new source kind adds its model here and its module beside this one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Segment(_Model):
    """One stretch of the synthetic stream: a river generator's concept over a region."""

    rows: int = Field(gt=0)
    function: int = Field(default=0, ge=0, le=9)
    where: dict[str, tuple[float, float]] = Field(default_factory=dict)
    label_noise: float = Field(default=0.0, ge=0.0, le=1.0)
    name: str | None = None


class SyntheticSourceConfig(_Model):
    """river's Agrawal generator, segment by segment (known drift points)."""

    kind: Literal["synthetic"] = "synthetic"
    generator: Literal["agrawal"] = "agrawal"
    segments: list[Segment] = Field(min_length=1)
    seed: int = 0
    batch_size: int = Field(default=250, gt=0)
    block_on_retrain: bool = True


class DirectorySourceConfig(_Model):
    """A directory watched for new CSV, Parquet or JSON-lines files."""

    kind: Literal["directory"] = "directory"
    path: Path
    patterns: list[str] = Field(default=["*.csv", "*.parquet", "*.jsonl"])
    poll_seconds: float = Field(default=1.0, gt=0)
    batch_size: int = Field(default=1000, gt=0)
    settle_seconds: float = Field(default=0.2, ge=0)
    """A file is read once its size and mtime have been still this long."""
    incomplete_seconds: float = Field(default=60.0, gt=0)
    """A last line without a newline waits this long for one, then is read as it is."""


class RedisSourceConfig(_Model):
    """A Redis stream read through a consumer group (runtime/intake/redis_source.py).

    Each entry carries one row as JSON in its ``row`` field (or a JSON array of rows in
    ``rows``); an entry is acknowledged only after its rows are durably written.
    """

    kind: Literal["redis"] = "redis"
    url: str = "redis://127.0.0.1:6379/0"
    stream: str = "driftloop"
    group: str = "driftloop"
    consumer: str | None = None
    """This daemon's name in the group (default: host name and process id)."""
    batch_size: int = Field(default=1000, gt=0)
    block_ms: int = Field(default=200, ge=0)
    claim_idle_ms: int = Field(default=30000, gt=0)
    """Entries another consumer read but did not acknowledge for this long are taken over."""
    drain_when_empty: bool = False
    """``exhausted()`` once the stream has nothing new and nothing pending (for replays)."""


class RabbitMQSourceConfig(_Model):
    """A durable RabbitMQ queue (runtime/intake/rabbitmq_source.py).

    Each message's body is one row as a JSON object, or a JSON array of rows; messages
    are acknowledged only after their rows are durably written.
    """

    kind: Literal["rabbitmq"] = "rabbitmq"
    url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    queue: str = Field(default="driftloop", min_length=1)
    batch_size: int = Field(default=500, gt=0)
    prefetch: int = Field(default=1000, gt=0, le=65535)
    """Messages the broker sends ahead, unacknowledged (AMQP caps it at 65535)."""
    block_ms: int = Field(default=200, ge=0)
    drain_when_empty: bool = False
    """``exhausted()`` once the queue has no ready messages and none of ours is unacked."""

    @field_validator("url")
    @classmethod
    def _amqp_url(cls, url: str) -> str:
        if not url.startswith(("amqp://", "amqps://")):
            raise ValueError(f"must start with amqp:// or amqps:// (got {url.split('@')[-1]!r})")
        return url

    @model_validator(mode="after")
    def _prefetch_holds_a_batch(self) -> RabbitMQSourceConfig:
        if self.prefetch < self.batch_size:
            raise ValueError(
                f"prefetch ({self.prefetch}) must be at least batch_size ({self.batch_size}): "
                "a batch is acknowledged whole, so the broker must send that many unacknowledged"
            )
        return self


class KafkaSourceConfig(_Model):
    """A Kafka topic, every partition of it (runtime/intake/kafka_source.py).

    Each message's value is one row as a JSON object, or a JSON array of rows; a
    partition's offset is committed to ``group_id`` only after its rows are durably written.
    """

    kind: Literal["kafka"] = "kafka"
    bootstrap_servers: str = Field(default="127.0.0.1:9092", min_length=1)
    topic: str = Field(default="driftloop", min_length=1)
    group_id: str = Field(default="driftloop", min_length=1)
    batch_size: int = Field(default=500, gt=0)
    block_ms: int = Field(default=200, ge=0)
    start: Literal["earliest", "latest"] = "earliest"
    """Where a partition with no committed offset in the group starts."""
    timestamp_column: str | None = None
    """A feature holding each row's event time: a batch's messages from several
    partitions are merged by it (else by partition, then offset)."""
    partition_check_seconds: float = Field(default=10.0, gt=0)
    """How often the topic's partitions are listed again (a new one is read from its start)."""
    metadata_timeout_ms: int = Field(default=5000, gt=0)
    options: dict[str, str | int | float | bool] = Field(default_factory=dict)
    """Further librdkafka settings (``security.protocol``, ``sasl.*``, ``ssl.*``, …)."""
    drain_when_empty: bool = False
    """``exhausted()`` once every partition is read to its end and committed (for replays)."""

    @field_validator("options")
    @classmethod
    def _not_ours(
        cls, options: dict[str, str | int | float | bool]
    ) -> dict[str, str | int | float | bool]:
        owned = sorted(set(options) & _KAFKA_OWNED)
        if owned:
            raise ValueError(f"{', '.join(owned)} is set by driftloop (see the source's keys)")
        return options


_KAFKA_OWNED = {
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "enable.partition.eof",
}


class NatsSourceConfig(_Model):
    """A NATS JetStream stream read by a durable pull consumer (runtime/intake/nats_source.py).

    Each message's data is one row as a JSON object, or a JSON array of rows; messages are
    acknowledged only after their rows are durably written.
    """

    kind: Literal["nats"] = "nats"
    url: str = "nats://127.0.0.1:4222"
    stream: str = Field(default="driftloop", min_length=1)
    subject: str = Field(default="driftloop.rows", min_length=1)
    """The subject read (and, when the stream does not exist, the stream created for it)."""
    durable: str = Field(default="driftloop", min_length=1)
    batch_size: int = Field(default=500, gt=0)
    block_ms: int = Field(default=200, ge=0)
    ack_wait_seconds: float = Field(default=30.0, gt=0)
    """A message delivered and not acknowledged for this long is delivered again."""
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    drain_when_empty: bool = False
    """``exhausted()`` once the consumer has nothing pending and nothing unacknowledged."""

    @field_validator("url")
    @classmethod
    def _nats_url(cls, url: str) -> str:
        if not url.startswith(("nats://", "tls://", "ws://", "wss://")):
            raise ValueError(f"must start with nats:// or tls:// (got {url.split('@')[-1]!r})")
        return url


class HttpSourceConfig(_Model):
    """Rows arrive only through the HTTP API (``POST /v1/ingest``)."""

    kind: Literal["http"] = "http"


SourceConfig = Annotated[
    SyntheticSourceConfig
    | DirectorySourceConfig
    | RedisSourceConfig
    | RabbitMQSourceConfig
    | KafkaSourceConfig
    | NatsSourceConfig
    | HttpSourceConfig,
    Field(discriminator="kind"),
]
