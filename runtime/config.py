"""The daemon's configuration: one YAML file, validated by typed models.

Defaults live here and only here. Every model forbids unknown keys, so a misspelt key
fails loudly; :func:`load_config` turns any validation error into one line that names
the key and the problem (:class:`ConfigError`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from detectors.registry import DetectorConfig, default_univariate
from runtime.handoff.settings import ExportConfig, HookConfig, hook_names
from runtime.intake.settings import DirectorySourceConfig, SourceConfig
from runtime.intake.settings import SchemaConfig as SchemaConfig
from runtime.monitoring.settings import PolicyConfig as PolicyConfig
from runtime.promotion.settings import GateConfig, WatchConfig
from runtime.training.settings import (
    DistributedConfig,
    RegressionConfig,
    refusal,
    regression_problem,
)
from strategies.models import MLPConfig, ModelConfig
from strategies.registry import BufferConfig, StrategyConfig


class ConfigError(ValueError):
    """A config file that cannot be used; the message is one line."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiConfig(_Model):
    """The HTTP API (runtime/service/api.py), served by the daemon while it runs."""

    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    token_env: str | None = "DRIFTLOOP_TOKEN"
    """Environment variable holding the bearer token for mutating endpoints; the daemon
    refuses to start if it is unset. ``null`` serves a read-only API."""
    read_token_env: str | None = None
    """Environment variable holding a bearer token that model artifacts
    (``GET /v1/models/{version}/artifact``) need, besides the mutating token; ``null``:
    artifacts are open like the other reads."""
    max_body_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    max_batch_rows: int = Field(default=10000, gt=0)
    max_header_bytes: int = Field(default=64 * 1024, gt=0)
    """Request headers larger than this in all are refused (431)."""
    max_headers: int = Field(default=100, gt=0)
    """Requests with more headers than this are refused (431)."""
    monitor_queue_rows: int = Field(default=200000, gt=0)
    """Rows accepted over HTTP waiting for the detectors; when full, ingest waits."""
    shutdown_seconds: float = Field(default=5.0, gt=0)


class LeaderConfig(_Model):
    """Leader election between daemons sharing one PostgreSQL database (runtime/store/leader.py).

    Daemons with the same ``name`` on one database elect one leader, which retrains and
    promotes; the others ingest, monitor and serve reads, and take over within
    ``poll_seconds`` when the leader's database session ends. They share ``state_dir``
    (the model files), each with its own ``instance`` name.
    """

    name: str = "driftloop"
    instance: str | None = None
    """This daemon's name (default: host name and process id)."""
    poll_seconds: float = Field(default=1.0, gt=0)


class BootstrapConfig(_Model):
    """How v1 is trained when there is no champion yet."""

    rows: int = Field(default=2000, gt=0)
    data: Path | None = None
    epochs: int = Field(default=30, gt=0)
    lr: float = Field(default=3e-3, gt=0)
    batch_size: int = Field(default=64, gt=0)
    patience: int | None = Field(default=10, gt=0)
    """A schema with typed columns (v1 has a preprocessing unit): stop training after this
    many epochs without a better validation score and keep the best epoch's weights;
    ``None`` trains every epoch. A schema of plain numbers trains every epoch. Chosen on
    bench/tabular.py (bench/README.md)."""
    validation_fraction: float = Field(default=0.2, gt=0, lt=1)
    golden_fraction: float = Field(default=0.2, gt=0, lt=1)
    min_accuracy: float = Field(default=0.0, ge=0, le=1)
    max_mae: float | None = Field(default=None, gt=0)
    """Regression: v1's validation MAE (in target units) must not exceed this."""


class BudgetConfig(_Model):
    epochs: int | None = Field(default=10, gt=0)
    steps: int | None = Field(default=None, gt=0)
    seconds: float | None = Field(default=120.0, gt=0)

    @model_validator(mode="after")
    def _some_limit(self) -> BudgetConfig:
        if self.epochs is None and self.steps is None and self.seconds is None:
            raise ValueError("the budget sets no limit: set epochs, steps or seconds")
        return self


def _schedule_fits(strategy: StrategyConfig, budget: BudgetConfig) -> None:
    """A decaying schedule needs a length: the budget's epochs or steps."""
    schedule = strategy.adapt.schedule
    if schedule != "constant" and budget.epochs is None and budget.steps is None:
        raise ValueError(
            f"strategy.adapt.schedule {schedule!r} decays over the budget's epochs or steps, "
            "and budget sets only seconds: set budget.epochs or budget.steps (or schedule: "
            "constant)"
        )


class RetrainConfig(_Model):
    """The retrain job that runs in a child process."""

    strategy: StrategyConfig = Field(default_factory=lambda: _default_strategy())
    buffer: BufferConfig = Field(default_factory=BufferConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    timeout_seconds: float = Field(default=600.0, gt=0)
    holdout_fraction: float = Field(default=0.3, gt=0, lt=1)
    max_rows: int = Field(default=20000, gt=0)
    min_rows: int | None = Field(default=None, gt=0)
    """The fewest labelled rows a retrain learns from: when fewer arrived since its onset
    (a drift found within a few hundred rows), it takes the newest ``min_rows`` up to its
    end instead, reaching back before the onset. ``None``: 300 rows per class of the
    schema (600 for ``task: regression``): the rows since an early alarm on a stream of
    many classes miss some classes, and a candidate fitted to them forgets those
    (bench/real_streams.py's covertype, 7 classes); ``1``: the rows since the onset only."""
    reference_size: int = Field(default=2000, gt=0)
    seed: int = 0
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$")
    """Where retrains and bootstrap stages train: ``auto`` (CUDA when available, else
    CPU), ``cpu``, ``cuda`` or ``cuda:N``. On CUDA the forward pass runs under bf16
    autocast."""
    distributed: DistributedConfig | None = None
    """Train on several processes (runtime/training/settings.py); absent or one process:
    the single-process retrain."""

    @model_validator(mode="after")
    def _schedule_has_a_length(self) -> RetrainConfig:
        _schedule_fits(self.strategy, self.budget)
        reason = refusal(self.strategy, self.device, self.distributed)
        if reason is not None:
            raise ValueError(reason)
        return self

    @property
    def torch_device(self) -> str | None:
        """``device`` as the strategies take it (``None`` lets them pick)."""
        return None if self.device == "auto" else self.device


class ExitCriterion(_Model):
    """A threshold on one metric of a stage's validation data (``min`` and/or ``max``)."""

    metric: Literal["accuracy", "balanced_accuracy", "loss"]
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bound(self) -> ExitCriterion:
        if self.min is None and self.max is None:
            raise ValueError("an exit criterion needs min or max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}: no value can pass")
        return self


class StageConfig(_Model):
    """One stage of staged training (``driftloop bootstrap`` runs them in order)."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    data: Path | None = None
    """Rows for this stage (CSV, Parquet or JSON lines with the schema's columns);
    ``None``: the bootstrap rows (their golden split is never trained on)."""
    strategy: StrategyConfig = Field(default_factory=lambda: _default_stage_strategy())
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    validation_fraction: float = Field(default=0.2, gt=0, lt=1)
    """Held out of ``data`` for validation (the bootstrap rows use bootstrap's split)."""
    exit: list[ExitCriterion] = Field(default_factory=list)

    @model_validator(mode="after")
    def _schedule_has_a_length(self) -> StageConfig:
        _schedule_fits(self.strategy, self.budget)
        return self


class GoldenConfig(_Model):
    """The golden sets: each version's held-out rows, kept to check later candidates for
    forgetting."""

    max_rows: int = Field(default=1000, gt=0)
    max_sets: int | None = Field(default=1, gt=0)
    """The most recent golden sets a version keeps (its own included), which the next
    candidate is checked on; older ones expire, so knowledge of a distribution long gone
    stops holding candidates back. ``None``: every set since v1."""


class ReportsConfig(_Model):
    """Files written next to the event log."""

    drift_html: bool = False
    """An evidently HTML report (DataDriftPreset, same test) for each feature-drift alarm
    (4-7 MB and most of the wall time on real streams, where feature alarms are many:
    off unless asked for)."""


class SchedulerConfig(_Model):
    tick_seconds: float = Field(default=0.5, gt=0)
    retention_seconds: float = Field(default=3600.0, gt=0)
    keep_candidates: int = Field(default=10, ge=0)


class DriftloopConfig(_Model):
    """The whole file."""

    state_dir: Path
    database_url: str | None = None
    sqlite_synchronous: Literal["full", "normal"] = "full"
    """The embedded SQLite database's commit durability (ignored for PostgreSQL).
    ``full``: each commit is fsynced, so an acknowledged row survives power loss.
    ``normal`` (WAL): a commit reaches the operating system, fsync waits for the
    checkpoint: an acknowledged row survives a crash or ``kill -9`` of the daemon, but
    the last commits can be lost to a power cut or kernel crash; no fsync per commit
    (milliseconds each on a busy disk)."""
    seed: int = 0
    task: Literal["classification", "regression"] = "classification"
    """``regression``: a numeric label, one output, MAE (runtime/training/settings.py)."""
    regression: RegressionConfig = Field(default_factory=RegressionConfig)
    torch_threads: int = Field(default=1, ge=1)
    """Threads torch uses in the daemon and the retrain child (small models run fastest on one)."""
    schema_: SchemaConfig = Field(alias="schema")
    source: SourceConfig
    model: ModelConfig = Field(default_factory=MLPConfig)
    bootstrap: BootstrapConfig = Field(default_factory=BootstrapConfig)
    stages: list[StageConfig] = Field(default_factory=list)
    """Staged training for v1; empty: one stage from ``bootstrap``'s settings."""
    detectors: list[DetectorConfig] = Field(default_factory=default_univariate, min_length=1)
    """What watches the stream; left out: CUSUM and ADWIN on the champion's error, the
    pair bench/detectors.py measures (feature detectors are opt-in: on real,
    autocorrelated streams they alarm on nearly every batch)."""
    schema_detectors: bool = True
    """Add the detectors the schema's columns call for (categorical columns compared by
    category counts and their unseen-category share, the missing-value rate of columns
    that may miss values; runtime/monitoring/columns.py)."""
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    watch: WatchConfig = Field(default_factory=WatchConfig)
    golden: GoldenConfig = Field(default_factory=GoldenConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    reports: ReportsConfig = Field(default_factory=ReportsConfig)
    api: ApiConfig | None = None
    leader: LeaderConfig | None = None
    export: ExportConfig | None = None
    """Hand every new champion to serving (runtime/handoff/publisher.py)."""
    hooks: list[HookConfig] = Field(default_factory=list)
    """Tell people: webhooks and commands on chosen events (runtime/handoff/dispatcher.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def schema(self) -> SchemaConfig:  # type: ignore[override]
        return self.schema_

    @model_validator(mode="after")
    def _detector_names(self) -> DriftloopConfig:
        stage_names = [st.name for st in self.stages]
        if len(set(stage_names)) != len(stage_names):
            raise ValueError("stage names must be distinct")
        names = [d.name or d.kind for d in self.detectors]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(
                f"detector names must be distinct (set `name:`), repeated: {', '.join(dupes)}"
            )
        signals = {"error", "loss", "confidence", "features", *self.schema_.features}
        for d in self.detectors:
            if d.signal not in signals:
                raise ValueError(
                    f"detector {d.name or d.kind!r} watches unknown signal {d.signal!r} "
                    f"(one of error, loss, confidence, features or a feature name)"
                )
        return self

    @model_validator(mode="after")
    def _policy_names(self) -> DriftloopConfig:
        """Names in ``policy`` that match nothing would silently disable what they steer."""
        p = self.policy
        signals = {"error", "loss", "confidence", "features", *self.schema_.features}
        unknown = [s for s in p.retrain_on if s not in signals]
        if unknown:
            raise ValueError(
                f"policy.retrain_on names unknown signal(s) {', '.join(map(repr, unknown))} "
                "(error, loss, confidence, features or a feature name)"
            )
        names = [d.name or d.kind for d in self.detectors]
        voters = names if p.vote_among is None else p.vote_among
        unknown = [v for v in voters if v not in names]
        if unknown:
            raise ValueError(
                f"policy.vote_among names unknown detector(s) {', '.join(map(repr, unknown))} "
                f"(detectors: {', '.join(names)})"
            )
        if p.vote_k > len(set(voters)):
            raise ValueError(
                f"policy.vote_k {p.vote_k} exceeds the {len(set(voters))} voting detector(s): "
                "no vote could ever pass"
            )
        return self

    @model_validator(mode="after")
    def _gate_names(self) -> DriftloopConfig:
        """Gate rules must name classes, slices and features that exist (the gate would
        refuse every candidate on them)."""
        g, features = self.gate, self.schema_.features
        for name, where in g.slices.items():
            unknown = [f for f in where if f not in features]
            if unknown:
                raise ValueError(
                    f"gate.slices.{name} names unknown feature(s) {', '.join(unknown)}"
                )
        classes = [str(c) for c in self.schema_.classes]
        for i, rule in enumerate(g.rules or ()):
            if rule.by == "slice" and not g.slices:
                raise ValueError(f"gate.rules[{i}] is by: slice but gate.slices defines none")
            known = classes if rule.by == "class" else list(g.slices)
            unknown = [o for o in rule.only or () if o not in known]
            if unknown:
                raise ValueError(
                    f"gate.rules[{i}].only names unknown "
                    f"{'class(es)' if rule.by == 'class' else 'slice(s)'} {', '.join(unknown)} "
                    f"(one of {', '.join(known)})"
                )
        return self

    @model_validator(mode="after")
    def _task_fits(self) -> DriftloopConfig:
        problem = regression_problem(self) if self.task == "regression" else (
            None if self.bootstrap.max_mae is None else "bootstrap.max_mae needs regression")
        if problem is not None:
            raise ValueError(problem)
        self.schema_._numeric_label = self.task == "regression"
        return self

    @model_validator(mode="after")
    def _hook_names(self) -> DriftloopConfig:
        names = hook_names(self.hooks)
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"hook names must be distinct, repeated: {', '.join(dupes)}")
        return self

    @model_validator(mode="after")
    def _leader_needs_postgres(self) -> DriftloopConfig:
        url = self.database_url or ""
        if self.leader is not None and not url.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                "leader election needs a shared PostgreSQL database: set database_url "
                "to postgresql://… or remove `leader:`"
            )
        return self

    def config_hash(self) -> str:
        """sha256 of the canonical JSON of the config (recorded in each version's lineage)."""
        blob = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


def _default_stage_strategy() -> StrategyConfig:
    from strategies.finetune import Config as FinetuneConfig

    return FinetuneConfig()


def _default_strategy() -> StrategyConfig:
    from strategies.replay import Config as ReplayConfig

    return ReplayConfig()


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        elif (
            p in {"synthetic", "directory", "redis", "rabbitmq", "kafka", "nats", "http"}
            or "[" in str(p)
            or "function-after" in str(p)
        ):
            continue  # pydantic's union-branch tags are noise to a user
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts) or "(top level)"


def format_validation_error(err: ValidationError, origin: str) -> str:
    """The first error of ``err`` as one line naming the key and the problem."""
    first = err.errors()[0]
    where = _location(tuple(first["loc"]))
    kind = first["type"]
    if kind == "extra_forbidden":
        return f"{origin}: unknown key '{where}'"
    if kind == "missing":
        return f"{origin}: missing key '{where}'"
    msg = str(first["msg"]).removeprefix("Value error, ")
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{origin}: '{where}': {msg}{more}"


def parse_config(
    data: Any, origin: str = "config", base_dir: Path | None = None
) -> DriftloopConfig:
    """Validate a mapping; relative paths are resolved against ``base_dir``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping at the top level")
    try:
        cfg = DriftloopConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, origin)) from None
    if base_dir is None:
        return cfg
    return _resolve_paths(cfg, base_dir)


def _resolve_paths(cfg: DriftloopConfig, base: Path) -> DriftloopConfig:
    def fix(p: Path) -> Path:
        return p if p.is_absolute() else (base / p).resolve()

    updates: dict[str, Any] = {"state_dir": fix(cfg.state_dir)}
    if isinstance(cfg.source, DirectorySourceConfig):
        updates["source"] = cfg.source.model_copy(update={"path": fix(cfg.source.path)})
    if cfg.bootstrap.data is not None:
        updates["bootstrap"] = cfg.bootstrap.model_copy(update={"data": fix(cfg.bootstrap.data)})
    if cfg.export is not None:
        updates["export"] = cfg.export.model_copy(update={"dir": fix(cfg.export.dir)})
    if any(st.data is not None for st in cfg.stages):
        updates["stages"] = [
            st if st.data is None else st.model_copy(update={"data": fix(st.data)})
            for st in cfg.stages
        ]
    return cfg.model_copy(update=updates)


def load_config(path: str | Path) -> DriftloopConfig:
    """Read and validate a YAML config file; raises :class:`ConfigError` (one line)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except OSError as err:
        raise ConfigError(f"{p}: cannot read ({err.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}: not valid YAML{line}") from None
    return parse_config(data, origin=str(p), base_dir=p.resolve().parent)
