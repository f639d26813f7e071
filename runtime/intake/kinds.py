"""The source kinds: ``source.kind`` in a config → the module that reads it.

A new source kind is a module in this package, its settings model in
:mod:`runtime.intake.settings`, and one branch here. Each module is imported only when a
config names its kind, so an unused broker client is never loaded.
"""

from __future__ import annotations

from sqlalchemy import select

from runtime.config import SchemaConfig
from runtime.intake.settings import (
    DirectorySourceConfig,
    HttpSourceConfig,
    KafkaSourceConfig,
    NatsSourceConfig,
    RabbitMQSourceConfig,
    RedisSourceConfig,
    SourceConfig,
)
from runtime.intake.sources import FileStamp, Source
from runtime.store.db import Database, processed_files


def build_source(
    src: SourceConfig, schema: SchemaConfig, cursor: int, seen: set[FileStamp]
) -> Source:
    """The configured source; ``seen`` are the files already stored (directory only)."""
    if isinstance(src, DirectorySourceConfig):
        from runtime.intake.directory_source import DirectorySource

        return DirectorySource(src, schema, seen)
    if isinstance(src, RedisSourceConfig):
        from runtime.intake.redis_source import RedisSource

        return RedisSource(src, schema)
    if isinstance(src, RabbitMQSourceConfig):
        from runtime.intake.rabbitmq_source import RabbitMQSource

        return RabbitMQSource(src, schema)
    if isinstance(src, KafkaSourceConfig):
        from runtime.intake.kafka_source import KafkaSource

        return KafkaSource(src, schema)
    if isinstance(src, NatsSourceConfig):
        from runtime.intake.nats_source import NatsSource

        return NatsSource(src, schema)
    if isinstance(src, HttpSourceConfig):
        from runtime.intake.http_source import HttpSource

        return HttpSource()
    from runtime.intake.demo_stream import SyntheticSource

    return SyntheticSource(src, schema, cursor=cursor)




def broker_lag(src: SourceConfig) -> dict[str, int] | None:
    """The configured source's lag asked of its broker (the daemon may be down), per
    partition; ``None`` for a kind without one. Raises
    :class:`~runtime.intake.redis_source.BrokerError` when the broker cannot be asked."""
    if isinstance(src, KafkaSourceConfig):
        from runtime.intake.kafka_source import group_lag

        return group_lag(src)
    if isinstance(src, NatsSourceConfig):
        from runtime.intake.nats_source import consumer_lag

        return consumer_lag(src)
    return None


def open_source(src: SourceConfig, schema: SchemaConfig, db: Database, cursor: int) -> Source:
    """The configured source at ``cursor``; a directory source skips the files stored."""
    seen: set[FileStamp] = set()
    if isinstance(src, DirectorySourceConfig):
        with db.connect() as conn:
            found = conn.execute(
                select(processed_files.c.path, processed_files.c.size, processed_files.c.mtime)
            )
            seen = {FileStamp(p, s, m) for p, s, m in found}
    return build_source(src, schema, cursor, seen)
