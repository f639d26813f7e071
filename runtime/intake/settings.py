"""The schema and the source settings a config names (one model per source kind, told
apart by ``kind``).

Pure pydantic models, so :mod:`runtime.config` composes them without importing any
broker client. A new source kind adds its model here and its module beside this one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator


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


# --- the schema: the columns of an incoming row (names, types, missing-value rules,
# label and classes).
#
# Pure pydantic, composed by :mod:`runtime.config` (which re-exports :class:`SchemaConfig`).
# A feature is declared by name (its type inferred from the first rows: text that is not a
# number is categorical, numbers numeric) or as a mapping with its ``type`` and ``missing``
# rule. Types are ``numeric``, ``categorical``, ``boolean``, ``timestamp`` and ``text``; a
# new type adds its name to :data:`ColumnType` and its parsing to
# :mod:`runtime.intake.validation`.
#
# Labels may be strings or integers. YAML reads an unquoted ``yes``/``no``/``on``/``off``
# as a boolean, so a boolean in ``classes`` is refused with a message saying to quote it.

ColumnType = Literal["numeric", "categorical", "boolean", "timestamp", "text"]
Missing = Literal["refuse", "impute", "indicator"]
"""What a missing value does: ``refuse`` quarantines the row with its reason; ``impute``
fills the training median (numeric) or mode (categorical, boolean); ``indicator`` fills
the same and adds a 0/1 input saying the value was missing."""


class ColumnConfig(_Model):
    """One feature column as declared (``type: None``: inferred from the first rows)."""

    name: str = Field(min_length=1)
    type: ColumnType | None = None
    missing: Missing | None = None
    """``None``: ``refuse``, or ``impute`` when ``schema.allow_nan`` is set."""
    min_count: int = Field(default=5, ge=1)
    """A category seen fewer times than this in a version's training rows goes to the
    ``unknown`` bucket (categorical columns only)."""
    max_length: int | None = Field(default=None, ge=2, le=512)
    """Tokens kept of a sentence, ``[CLS]`` and ``[SEP]`` included (``type: text`` only;
    ``None``: 32). The column is stored as that many token-id features."""

    @model_validator(mode="after")
    def _length_for_text(self) -> ColumnConfig:
        if self.max_length is not None and self.type != "text":
            raise ValueError(f"column {self.name!r}: max_length is for type: text only")
        return self

    @property
    def tokens(self) -> int:
        """The stored width of a text column."""
        return self.max_length or DEFAULT_TEXT_LENGTH


DEFAULT_TEXT_LENGTH = 32


def token_names(name: str, n: int) -> list[str]:
    """The stored features of text column ``name``: one token id each, ``name[00]`` …

    Examples
    --------
    >>> token_names("ticket", 3)
    ['ticket[00]', 'ticket[01]', 'ticket[02]']
    """
    width = max(2, len(str(n - 1)))
    return [f"{name}[{i:0{width}d}]" for i in range(n)]


class SchemaConfig(_Model):
    """The columns of an incoming row.

    ``features`` is a list of names or of mappings (``{name: plan, type: categorical,
    missing: impute}``); it is read back as the list of stored features, and
    :attr:`columns` holds each one's declaration. A ``type: text`` column is stored as
    ``max_length`` token-id features (``ticket[00]`` …, :func:`token_names`), which the
    ingest validator fills from the sentence; :attr:`inputs` names the columns as rows
    carry them.
    """

    features: list[str] = Field(min_length=1)
    columns: dict[str, ColumnConfig] = Field(default_factory=dict)
    label: str = "label"
    classes: list[int | str] = Field(default=[0, 1], min_length=2)
    id_column: str = "row_id"
    timestamp_column: str | None = None
    """A column holding each row's event time (ISO 8601 or epoch seconds): a batch's rows
    and labels are taken in its order. Not a feature."""
    allow_nan: bool = False
    _numeric_label: bool = PrivateAttr(default=False)  # set from the config's ``task``

    @property
    def numeric_label(self) -> bool:
        """Whether the label is a number (``task: regression``), not a class: labels are
        then float64, NaN where missing, instead of class values with -1."""
        return self._numeric_label

    @model_validator(mode="before")
    @classmethod
    def _declared(cls, data: Any) -> Any:
        """Split ``features`` given as mappings into names and :attr:`columns`."""
        if not isinstance(data, dict) or not isinstance(data.get("features"), list):
            return data
        names: list[Any] = []
        columns = dict(data.get("columns") or {})
        for i, f in enumerate(data["features"]):
            if isinstance(f, dict):
                if "name" not in f:
                    raise ValueError(f"features[{i}] declares a column without a name")
                columns[str(f["name"])] = f
                f = f["name"]
            declared = columns.get(str(f))
            if _declared_text(declared):
                names.extend(token_names(str(f), _declared_length(declared)))
            else:
                names.append(f)
        return {**data, "features": names, "columns": columns}

    @field_validator("classes", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any) -> Any:
        if isinstance(value, list) and any(isinstance(c, bool) for c in value):
            shown = ", ".join(str(c).lower() if isinstance(c, bool) else str(c) for c in value)
            raise ValueError(
                f"YAML read a class as a boolean ([{shown}]): quote the class names, "
                'e.g. classes: ["no", "yes"]'
            )
        return value

    @model_validator(mode="after")
    def _distinct(self) -> SchemaConfig:
        names = [*self.features, self.label, self.id_column]
        if self.timestamp_column is not None:
            names.append(self.timestamp_column)
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"column names must be distinct, repeated: {', '.join(dupes)}")
        if len({str(c) for c in self.classes}) != len(self.classes):
            raise ValueError("classes must be distinct")
        unknown = sorted(set(self.columns) - set(self.features) - set(self.text_columns))
        if unknown:
            raise ValueError(f"columns declares unknown feature(s): {', '.join(unknown)}")
        for name, col in self.columns.items():
            if col.name != name:
                raise ValueError(f"columns.{name} is named {col.name!r}")
        return self

    @property
    def class_values(self) -> list[int]:
        """Labels as stored: the integer classes themselves, or the positions of string
        classes (``["no", "yes"]`` is stored as 0 and 1)."""
        if all(isinstance(c, int) for c in self.classes):
            return [int(c) for c in self.classes]
        return list(range(len(self.classes)))

    @property
    def string_classes(self) -> bool:
        return not all(isinstance(c, int) for c in self.classes)

    @property
    def text_columns(self) -> dict[str, list[str]]:
        """Each ``type: text`` column's stored token-id features."""
        return {n: token_names(n, c.tokens) for n, c in self.columns.items() if c.type == "text"}

    @property
    def inputs(self) -> list[str]:
        """The feature columns as rows carry them: :attr:`features` with each text
        column's token ids as the one column of its sentence."""
        owner = {t: n for n, tokens in self.text_columns.items() for t in tokens}
        out: list[str] = []
        for f in self.features:
            name = owner.get(f, f)
            if not out or out[-1] != name or name not in self.text_columns:
                out.append(name)
        return out

    def column(self, name: str) -> ColumnConfig:
        """The declaration of feature ``name`` (a bare name: type inferred; a text
        column's token id: a number, never missing)."""
        declared = self.columns.get(name)
        if declared is not None and declared.type != "text":
            return declared
        if "[" in name and name.endswith("]") and name.split("[")[0] in self.text_columns:
            return ColumnConfig(name=name, type="numeric", missing="refuse")
        return declared or ColumnConfig(name=name)

    def missing_rule(self, name: str) -> Missing:
        rule = (self.columns.get(name) or self.column(name)).missing
        if rule is not None:
            return rule
        return "impute" if self.allow_nan else "refuse"

    def types(self) -> dict[str, ColumnType | None]:
        """Each feature's declared type (``None``: to be inferred)."""
        return {f: self.column(f).type for f in self.features}

    @property
    def typed(self) -> bool:
        """Whether the rows need a preprocessing step before the model (a column that is
        not numeric, or one whose missing values are imputed)."""
        return any(
            t not in (None, "numeric") for t in self.types().values()
        ) or any(self.column(f).missing in ("impute", "indicator") for f in self.features)

    def with_types(self, types: dict[str, ColumnType]) -> SchemaConfig:
        """This schema with the undeclared types filled in from ``types`` (inferred)."""
        cols = dict(self.columns)
        for f in self.features:
            if cols.get(f) is None or cols[f].type is None:
                base = cols.get(f) or ColumnConfig(name=f)
                cols[f] = base.model_copy(update={"type": types.get(f, "numeric")})
        return self.model_copy(update={"columns": cols})


def _declared_text(declared: Any) -> bool:
    if isinstance(declared, ColumnConfig):
        return declared.type == "text"
    return isinstance(declared, dict) and declared.get("type") == "text"


def _declared_length(declared: Any) -> int:
    if isinstance(declared, ColumnConfig):
        return declared.tokens
    length = declared.get("max_length")
    if length is None:
        return DEFAULT_TEXT_LENGTH
    try:
        return min(max(int(length), 0), 513)  # ColumnConfig refuses what is out of range
    except (TypeError, ValueError):
        return DEFAULT_TEXT_LENGTH  # ColumnConfig refuses it, naming the key
