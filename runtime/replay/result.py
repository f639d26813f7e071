"""What a replay run is asked to do (:class:`Schedule`) and what it did (:class:`RunResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Schedule:
    """What triggers a retrain, and whether the gate judges the candidates.

    ``drift``: the config's policy, as the daemon runs it: the detectors' alarms and the
    triggers of ``policy.triggers`` (labelled rows, accuracy floor, schedule, age);
    ``periodic``: every ``every`` rows, at most ``limit`` retrains; ``never``: none.
    """

    kind: Literal["drift", "periodic", "never"] = "drift"
    every: int = 0
    limit: int | None = None
    gate: bool = True
    name: str = "driftloop"


@dataclass
class Retrain:
    """One retrain of a run (positions are 0-based stream positions)."""

    trigger: str
    candidate: str
    requested_at: int  # the stream position the request was made after
    ready_at: int
    onset: int  # the row (seq) the training data starts at
    first_row: int
    last_row: int  # the last labelled row trained on (seq)
    rows: int
    train_seconds: float
    wall_seconds: float
    outcome: str = "pending"  # promoted | refused | awaiting | pending
    failed_checks: list[str] = field(default_factory=list)  # of a refusal, e.g. golden:v1


@dataclass
class RunResult:
    name: str
    start: int  # the first scored stream position (after the bootstrap)
    # per position 1/0 (served class right), or with metric ``mae`` the absolute residual;
    # NaN where nothing was served
    correct: npt.NDArray[np.float64]
    served: npt.NDArray[np.int64]  # index into ``versions`` of the model that served each row
    versions: list[str]
    retrains: list[Retrain] = field(default_factory=list)
    alarms: int = 0
    rollbacks: int = 0
    wall_seconds: float = 0.0
    metric: Literal["accuracy", "mae"] = "accuracy"

    @property
    def value(self) -> float:
        """The prequential :attr:`metric`: the mean of :attr:`correct` over scored rows."""
        scored = self.correct[self.start:]
        scored = scored[~np.isnan(scored)]
        return float(scored.mean()) if len(scored) else float("nan")

    @property
    def accuracy(self) -> float:
        return self.value if self.metric == "accuracy" else float("nan")

    @property
    def score(self) -> float:
        """Higher is better: the accuracy, or minus the MAE."""
        return self.value if self.metric == "accuracy" else -self.value

    def count(self, outcome: str) -> int:
        return sum(r.outcome == outcome for r in self.retrains)

    def by_trigger(self) -> dict[str, int]:
        """Retrains per trigger kind (``drift``, ``labelled_rows``, ``periodic``, ...)."""
        out: dict[str, int] = {}
        for r in self.retrains:
            kind = r.trigger.split("-", 1)[0]  # trigger ids are <kind>-<what it is about>
            out[kind] = out.get(kind, 0) + 1
        return out

    @property
    def train_seconds(self) -> float:
        return float(sum(r.train_seconds for r in self.retrains))


