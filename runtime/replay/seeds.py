"""The comparison over several retrain seeds: is the loop's lead over a schedule real?

One retrain seed is one draw. The seed (``retrain.seed``: the holdout split, the batch
order, new parts' initial weights) moves every retrain's candidate, and over a stream the
loop's accuracy against periodic retraining at the same number of retrains moves with it:
on bench/real_streams.py's covertype by −0.44 to +0.93 points over seeds 0-4 for one and
the same config. A setting chosen on one seed is chosen partly on that noise.

:func:`compare_seeds` runs :func:`~runtime.replay.compare.compare` once per seed and
:func:`gains` pairs each seed's loop with the baselines of the same seed (periodic at that
seed's own number of retrains): the mean gain, its standard error over the seeds, and a
verdict that says whether the mean is further from zero than the seeds' spread explains
(a two-sided t interval at 95%, which needs at least three seeds). :func:`grid_seeds`
runs a ``--grid`` once per seed and marks the frontier on the seeds' means.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

from runtime.config import DriftloopConfig
from runtime.replay.compare import (
    BASELINES,
    Options,
    compare,
    frontier_points,
    grid,
    with_settings,
)
from runtime.replay.engine import Report, RunResult
from runtime.replay.stream import LoggedStream

MIN_SEEDS_FOR_VERDICT = 3


def parse_seeds(text: str) -> tuple[int, ...]:
    """``0,1,2`` → (0, 1, 2); a repeated or non-integer seed is a ValueError."""
    try:
        seeds = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--seeds {text!r}: expected integers separated by commas "
                         "(e.g. 0,1,2)") from None
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {text!r}: a seed is repeated")
    if any(s < 0 for s in seeds):
        raise ValueError(f"--seeds {text!r}: seeds are non-negative")
    return seeds


def seeded(cfg: DriftloopConfig, seed: int) -> DriftloopConfig:
    """``cfg`` with ``retrain.seed`` set to ``seed``."""
    return cfg if cfg.retrain.seed == seed else with_settings(cfg, {"retrain.seed": seed})


def compare_seeds(cfg: DriftloopConfig, stream: LoggedStream, opts: Options,
                  seeds: Sequence[int], report: Report | None = None
                  ) -> dict[int, list[RunResult]]:
    """Each seed's comparison: the loop, never-retrain, periodic at the same and at twice
    that seed's retrains (:func:`~runtime.replay.compare.compare`)."""
    out = {}
    for seed in seeds:
        runs = compare(seeded(cfg, seed), stream, opts, report)
        for r in runs:
            r.name = f"{r.name}, seed {seed}"
        out[seed] = runs
    return out


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def standard_error(values: Sequence[float]) -> float | None:
    """The standard error of the mean of ``values`` (``None`` for fewer than two)."""
    n = len(values)
    if n < 2:
        return None
    m = mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1) / n)


@dataclass(frozen=True)
class Gain:
    """The loop's gain over one baseline across seeds: accuracy points (or MAE cut)."""

    baseline: str
    per_seed: tuple[float, ...]

    @property
    def mean(self) -> float:
        return mean(self.per_seed)

    @property
    def se(self) -> float | None:
        """The standard error of :attr:`mean` (``None`` with one seed)."""
        return standard_error(self.per_seed)

    @property
    def half_width(self) -> float | None:
        """Half the 95% t interval of :attr:`mean` (``None`` below three seeds)."""
        n = len(self.per_seed)
        if n < MIN_SEEDS_FOR_VERDICT or self.se is None:
            return None
        return float(stats.t.ppf(0.975, n - 1)) * self.se

    @property
    def verdict(self) -> str:
        """``ahead``, ``behind``, ``within noise``, or ``too few seeds`` (under three)."""
        hw = self.half_width
        if hw is None:
            return "too few seeds"
        if self.mean - hw > 0:
            return "ahead"
        if self.mean + hw < 0:
            return "behind"
        return "within noise"


def gains(per_seed: dict[int, list[RunResult]]) -> list[Gain]:
    """The loop (each seed's first run) against every baseline all seeds ran, each known by
    its place in :func:`~runtime.replay.compare.compare`'s runs (:data:`BASELINES`)."""
    scale = 100.0 if next(iter(per_seed.values()))[0].metric == "accuracy" else 1.0
    by_name: dict[str, list[float]] = {}
    for runs in per_seed.values():
        loop, baselines = runs[0], runs[1:]
        for name, b in zip(BASELINES, baselines, strict=False):
            by_name.setdefault(name, []).append(scale * (loop.score - b.score))
    return [Gain(name, tuple(values)) for name, values in by_name.items()
            if len(values) == len(per_seed)]


def gains_table(per_seed: dict[int, list[RunResult]]) -> str:
    """One line per baseline: the loop's gain per seed, mean ± standard error, verdict."""
    first = next(iter(per_seed.values()))[0]
    unit = "points" if first.metric == "accuracy" else "MAE cut"
    seeds = list(per_seed)
    lines = [f"| loop's gain over ({unit}) | "
             + " | ".join(f"seed {s}" for s in seeds) + " | mean ± s.e. | verdict |",
             "|---|" + "---|" * len(seeds) + "---|---|"]
    for g in gains(per_seed):
        se = "" if g.se is None else f" ± {g.se:.2f}"
        lines.append(f"| {g.baseline} | " + " | ".join(f"{v:+.2f}" for v in g.per_seed)
                     + f" | {g.mean:+.2f}{se} | {g.verdict} |")
    return "\n".join(lines)


# -- the grid over seeds ---------------------------------------------------------------------
def grid_seeds(cfg: DriftloopConfig, stream: LoggedStream, specs: Sequence[str], opts: Options,
               seeds: Sequence[int], report: Report | None = None
               ) -> list[tuple[dict[str, object], list[RunResult]]]:
    """Every setting of the grid, its runs one per seed (in ``seeds`` order)."""
    per_seed = [grid(seeded(cfg, seed), stream, specs, opts, report) for seed in seeds]
    return [(rows[0][0], [r for _, r in rows]) for rows in zip(*per_seed, strict=True)]


def grid_seeds_table(rows: Sequence[tuple[dict[str, object], list[RunResult]]],
                     never: RunResult) -> str:
    """The grid's table on the seeds' means (score ± its standard error, retrains)."""
    metric = "MAE" if never.metric == "mae" else "accuracy"
    retrains = [mean([len(r.retrains) for r in runs]) for _, runs in rows]
    scores = [mean([r.score for r in runs]) for _, runs in rows]
    marks = frontier_points(list(zip(retrains, scores, strict=True)))
    lines = [f"| settings | prequential {metric}, mean ± s.e. | retrains | promoted | refused "
             "| frontier |", "|---|---|---|---|---|---|",
             f"| never retrain | {never.value:.4f} | 0 | 0 | 0 | |"]
    for i in sorted(range(len(rows)), key=lambda i: (retrains[i], -scores[i])):
        settings, runs = rows[i]
        values = [r.value for r in runs]
        se = standard_error(values)
        name = ", ".join(f"{a}={b}" for a, b in settings.items())
        plus = "" if se is None else f" ± {se:.4f}"
        lines.append(f"| {name} | {mean(values):.4f}{plus} | {retrains[i]:g} | "
                     f"{mean([r.count('promoted') for r in runs]):g} | "
                     f"{mean([r.count('refused') for r in runs]):g} | "
                     f"{'*' if marks[i] else ''} |")
    return "\n".join(lines)
