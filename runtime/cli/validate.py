"""``driftloop validate``: build every component from a config without starting anything."""

from __future__ import annotations

from collections.abc import Iterator

from detectors.registry import build as build_detector
from runtime.config import ConfigError, DriftloopConfig
from runtime.intake.demo_stream import SyntheticSource
from runtime.intake.settings import (
    DirectorySourceConfig,
    HttpSourceConfig,
    KafkaSourceConfig,
    NatsSourceConfig,
    RabbitMQSourceConfig,
    RedisSourceConfig,
    SyntheticSourceConfig,
)
from runtime.store.unit import new_buffer, new_model
from runtime.training.stages import StageFailed, adapt_error, preflight
from strategies import adaptation
from strategies.registry import build as build_strategy


def build_everything(cfg: DriftloopConfig) -> Iterator[str]:
    """Yields one line per component built; raises on the first that cannot be."""
    features = list(cfg.schema.features)
    s = cfg.schema
    yield f"schema: {len(features)} features, label {s.label!r}, classes {s.classes}"
    texts = s.text_columns
    types = {f: "text" if f in texts else s.column(f).type for f in s.inputs}
    declared = {f: t for f, t in types.items() if t is not None}
    if declared:
        yield "columns: " + ", ".join(
            f"{f} {t}" + (f" ({len(texts[f])} token ids)" if f in texts else "")
            for f, t in declared.items())
    untyped = [f for f, t in types.items() if t is None]
    if untyped and declared:
        yield f"types inferred from the first rows for: {', '.join(untyped)}"
    src = cfg.source
    if isinstance(src, SyntheticSourceConfig):
        total = SyntheticSource(src, cfg.schema).total
        yield f"source: synthetic agrawal, {len(src.segments)} segments, {total} rows"
    elif isinstance(src, DirectorySourceConfig):
        note = "" if src.path.is_dir() else " (does not exist yet; it will be watched once created)"
        yield f"source: directory {src.path}{note}"
    elif isinstance(src, RedisSourceConfig):
        yield f"source: redis stream {src.stream!r} (group {src.group!r}) at {_host(src.url)}"
    elif isinstance(src, RabbitMQSourceConfig):
        yield f"source: rabbitmq queue {src.queue!r} at {_host(src.url)}"
    elif isinstance(src, KafkaSourceConfig):
        where = src.bootstrap_servers
        yield f"source: kafka topic {src.topic!r} (group {src.group_id!r}) at {where}"
    elif isinstance(src, NatsSourceConfig):
        where = _host(src.url)
        yield f"source: nats stream {src.stream!r} (consumer {src.durable!r}) at {where}"
    elif isinstance(src, HttpSourceConfig):
        yield "source: rows arrive through the HTTP API (POST /v1/ingest)"
    if cfg.api is not None:
        auth = f"token from ${cfg.api.token_env}" if cfg.api.token_env else "read-only"
        yield f"api: http://{cfg.api.host}:{cfg.api.port} ({auth})"
    if cfg.leader is not None:
        yield f"leader election: {cfg.leader.name!r} on the shared database"
    model = new_model(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    yield f"model: {type(model).__name__}, {n_params} parameters"
    for i, d in enumerate(cfg.detectors):
        try:
            det = build_detector(d, features)
        except ValueError as err:  # one line naming the key, as a load error does
            raise ConfigError(f"'detectors[{i}]' ({d.name or d.kind}): {err}") from None
        yield f"detector: {det.name} ({d.kind}) on {det.signal}"
    try:
        preflight(cfg, model)
    except StageFailed as err:
        raise ConfigError(str(err)) from None
    for i, st in enumerate(cfg.stages, start=1):
        build_strategy(st.strategy)
        data = "the bootstrap rows" if st.data is None else str(st.data)
        yield f"stage {i}/{len(cfg.stages)} {st.name}: {st.strategy.kind} on {data}"
    build_strategy(cfg.retrain.strategy)
    try:
        adaptation.check(model, cfg.retrain.strategy.adapt)
    except ValueError as err:
        raise ConfigError(adapt_error("retrain.strategy", err)) from None
    buf = new_buffer(cfg)
    r = cfg.retrain
    yield f"retrain: strategy {r.strategy.kind}, buffer {r.buffer.kind} ({buf.capacity})"
    g = cfg.gate
    yield (
        "gate: "
        + (f"min_gain {g.min_gain}, min_accuracy {g.min_accuracy}"
           if g.min_gain is not None else "refuse only when shown worse on the new data")
        + f", max_forgetting {g.max_forgetting}, obsolete golden rows: {g.obsolete_golden}"
    )
    yield f"state: {cfg.state_dir}" + (
        f" on {cfg.database_url.split('@')[-1]}" if cfg.database_url else " (SQLite)"
    )


def _host(url: str) -> str:
    """A URL without its credentials."""
    return url.split("@")[-1]
