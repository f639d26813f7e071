"""Rehearsal buffers backed by avalanche's storage policies (the only avalanche import).

avalanche decides *which* samples are kept (``ReservoirSamplingBuffer``,
``ClassBalancedBuffer``); the rows themselves are a :class:`~strategies.buffer_rows.Rows`.
Each offered row gets a sample id (its position in the stream of offered rows);
avalanche sees a dataset of ids and labels, and after every update we read back the ids
it kept and gather those rows.
The policy's dataset is then re-rooted on a flat dataset of the kept ids, because
avalanche's subset/concat tree otherwise keeps a reference to every dataset ever offered.

avalanche draws its reservoir keys from torch's global RNG; every update runs inside
``torch.random.fork_rng`` with a seed derived from ``(seed, number of updates so far)``,
so a buffer reproduces from its seed and the global RNG is left as it was. The
reservoir keys are the sampling state: avalanche keeps them in ``_buffer_weights``
without an accessor, so :func:`_weights` / :func:`_set_weights` are the one place that
reads and writes them (and :func:`_set_experience_count` the experience counter of the
experience-balanced policy, also kept without an accessor).

Rows may carry the model's logits (DER replays them); they travel with their rows
through every policy decision.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

with warnings.catch_warnings():
    # avalanche → qpsolvers → jaxopt warns on import that jaxopt is unmaintained.
    warnings.filterwarnings(
        "ignore", message="JAXopt is no longer maintained", category=DeprecationWarning
    )
    from avalanche.benchmarks.utils import DataAttribute, as_classification_dataset
    from avalanche.training.storage_policy import (
        ClassBalancedBuffer as AvalancheClassBalancedBuffer,
    )
    from avalanche.training.storage_policy import (
        ExperienceBalancedBuffer as AvalancheExperienceBalancedBuffer,
    )
    from avalanche.training.storage_policy import ReservoirSamplingBuffer

from strategies.buffer_rows import Rows, RowsAccess

STATE_VERSION = 1


class _SampleIds(Dataset[int]):
    """What avalanche stores: a sample id per row, with the row's label as ``targets``."""

    def __init__(self, ids: list[int], targets: list[int]) -> None:
        self.ids = ids
        self.targets = targets

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> int:
        return self.ids[i]


def _dataset(ids: torch.Tensor, y: torch.Tensor) -> Any:
    ids_list: list[int] = ids.tolist()
    # the storage policies see classes; regression targets are one class to them
    targets = [0] * len(ids_list) if y.is_floating_point() else y.tolist()
    data = as_classification_dataset(_SampleIds(ids_list, targets))
    # task labels (all 0) let it concatenate with the task-aware subsets the class-balanced
    # policy makes of the offered data
    data = data.update_data_attribute(
        "targets_task_labels", DataAttribute([0] * len(ids_list), "targets_task_labels")
    )
    return data.update_data_attribute("sample_id", DataAttribute(ids_list, "sample_id"))


def _kept_ids(dataset: Any) -> torch.Tensor:
    if len(dataset) == 0:
        return torch.empty(0, dtype=torch.int64)
    return torch.tensor(list(dataset.sample_id), dtype=torch.int64)


def _weights(policy: ReservoirSamplingBuffer) -> torch.Tensor:
    return policy._buffer_weights.detach().to(torch.float32).clone()  # type: ignore[no-any-return]


def _set_weights(policy: ReservoirSamplingBuffer, weights: torch.Tensor) -> None:
    policy._buffer_weights = weights.to(torch.float32).clone()


def _set_experience_count(policy: AvalancheExperienceBalancedBuffer, n: int) -> None:
    policy._num_exps = n


@dataclass(frozen=True)
class _Experience:
    """What ``ExperienceBalancedBuffer.post_adapt`` reads of an experience."""

    dataset: Any


def _update_seed(seed: int, update: int) -> int:
    entropy = [seed % 2**64, update]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])


def _seeded_call(seed: int, update: int, fn: Any, *args: Any) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(_update_seed(seed, update))
        fn(*args)


def _check_meta(meta: dict[str, Any], kind: str) -> None:
    if meta.get("version") != STATE_VERSION:
        raise ValueError(f"buffer state version {meta.get('version')!r}, expected {STATE_VERSION}")
    if meta.get("kind") != kind:
        raise ValueError(f"buffer state is of kind {meta.get('kind')!r}, expected {kind!r}")


def _check_capacity(capacity: int) -> None:
    if capacity < 1:
        raise ValueError(f"buffer capacity must be positive, got {capacity}")


def _common_meta(buf: Any) -> dict[str, Any]:
    return {
        "version": STATE_VERSION,
        "kind": buf.kind,
        "capacity": buf.capacity,
        "seed": buf.seed,
        "rng": {"seed": buf.seed, "updates": buf._updates},
        **buf._rows.meta(),
    }


def _read_common(
    tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> tuple[Rows, torch.Tensor, int, int, int]:
    try:
        rows = Rows()
        rows.restore(tensors, meta)
        return (
            rows,
            tensors["weight"],
            int(meta["capacity"]),
            int(meta["rng"]["seed"]),
            int(meta["rng"]["updates"]),
        )
    except KeyError as exc:
        raise ValueError(f"buffer state is missing {exc.args[0]!r}") from None


class ReservoirBuffer(RowsAccess):
    """A uniform sample of everything offered so far, at most ``capacity`` rows.

    Wraps avalanche's ``ReservoirSamplingBuffer``: each row gets a random key and the
    ``capacity`` rows with the highest keys are kept, which is a uniform sample of the
    stream without replacement.

    Parameters
    ----------
    capacity
        Maximum number of rows held.
    seed
        Seed of the reservoir keys; the same seed and the same offers give the same buffer.

    Examples
    --------
    >>> buf = ReservoirBuffer(capacity=10, seed=0)
    >>> buf.add(torch.randn(25, 3), torch.randint(0, 2, (25,)))
    >>> len(buf), buf.tensors()[0].shape
    (10, torch.Size([10, 3]))
    """

    kind = "reservoir"

    def __init__(self, capacity: int, seed: int) -> None:
        _check_capacity(capacity)
        self.capacity = capacity
        self.seed = seed
        self._updates = 0
        self._rows = Rows()
        self._policy = ReservoirSamplingBuffer(capacity)

    def add(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor | None = None) -> None:
        """Offer rows (and optionally their logits); the reservoir decides which are kept."""
        xs, ys, ids, zs = self._rows.offer(x, y, logits)
        if len(ids) == 0:
            return
        _seeded_call(self.seed, self._updates, self._policy.update_from_dataset, _dataset(ids, ys))
        self._updates += 1
        self._rows.accept(xs, ys, ids, zs)
        self._sync()

    def _sync(self) -> None:
        self._rows.keep(_kept_ids(self._policy.buffer))
        self._policy.buffer = _dataset(self._rows.ids, self._rows.y)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {**self._rows.tensors(), "weight": _weights(self._policy)}

    def state_meta(self) -> dict[str, Any]:
        return _common_meta(self)

    def load(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Restore a saved state (an empty ``meta`` means nothing was saved: no-op).

        The saved seed and update count are restored, so later ``add`` calls continue the
        saved stream. A different ``capacity`` than the saved one shrinks or grows the
        reservoir to this buffer's capacity.
        """
        if not meta:
            return
        _check_meta(meta, self.kind)
        rows, weight, saved_capacity, seed, updates = _read_common(tensors, meta)
        if weight.shape != rows.y.shape or len(rows.y) > saved_capacity:
            raise ValueError("buffer state: weights do not line up with the rows")
        policy = ReservoirSamplingBuffer(saved_capacity)
        policy.buffer = _dataset(rows.ids, rows.y)
        _set_weights(policy, weight)
        self._policy, self._rows, self.seed, self._updates = policy, rows, seed, updates
        if saved_capacity != self.capacity:
            self._policy.resize(None, self.capacity)
            self._sync()


class _Grouped(RowsAccess):
    """A buffer split into reservoir groups by an avalanche balanced policy."""

    kind: str
    capacity: int
    seed: int
    _updates: int
    _policy: Any

    def _sync(self) -> None:
        groups = list(self._policy.buffer_groups.values())
        per_group = [_kept_ids(g.buffer) for g in groups]
        self._rows.keep(torch.cat(per_group) if per_group else torch.empty(0, dtype=torch.int64))
        start = 0
        for g, ids in zip(groups, per_group, strict=True):
            stop = start + len(ids)
            g.buffer = _dataset(self._rows.ids[start:stop], self._rows.y[start:stop])
            start = stop

    def state_tensors(self) -> dict[str, torch.Tensor]:
        groups = list(self._policy.buffer_groups.values())
        weight = torch.cat([_weights(g) for g in groups]) if groups else torch.empty(0)
        return {**self._rows.tensors(), "weight": weight}

    def _group_meta(self) -> list[list[int]]:
        return [
            [int(c), int(g.max_size), len(g.buffer)] for c, g in self._policy.buffer_groups.items()
        ]

    def _load_groups(
        self, policy: Any, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
    ) -> None:
        rows, weight, saved_capacity, seed, updates = _read_common(tensors, meta)
        try:
            groups = [(int(c), int(m), int(n)) for c, m, n in meta["groups"]]
        except KeyError as exc:
            raise ValueError(f"buffer state is missing {exc.args[0]!r}") from None
        if weight.shape != rows.y.shape or sum(n for _, _, n in groups) != len(rows.y):
            raise ValueError("buffer state: groups or weights do not line up with the rows")
        start = 0
        for c, max_size, n in groups:
            group = ReservoirSamplingBuffer(max_size)
            group.buffer = _dataset(rows.ids[start : start + n], rows.y[start : start + n])
            _set_weights(group, weight[start : start + n])
            policy.buffer_groups[c] = group
            start += n
        self._policy, self._rows, self.seed, self._updates = policy, rows, seed, updates
        if saved_capacity != self.capacity:
            self._policy.resize(None, self.capacity)
            self._sync()


class ClassBalancedBuffer(_Grouped):
    """At most ``capacity`` rows, split evenly over the classes seen so far.

    Wraps avalanche's ``ClassBalancedBuffer`` with adaptive size: with ``k`` classes seen,
    each class gets ``capacity // k`` slots (the remainder goes to the first classes) and
    fills them by reservoir sampling within the class. A class with fewer rows than its
    share leaves the rest of its slots empty.

    Parameters
    ----------
    capacity
        Maximum number of rows held.
    seed
        Seed of the reservoir keys.

    Examples
    --------
    >>> buf = ClassBalancedBuffer(capacity=10, seed=0)
    >>> buf.add(torch.randn(100, 2), torch.cat([torch.zeros(90), torch.ones(10)]).long())
    >>> torch.bincount(buf.tensors()[1]).tolist()
    [5, 5]
    """

    kind = "class_balanced"

    def __init__(self, capacity: int, seed: int) -> None:
        _check_capacity(capacity)
        self.capacity = capacity
        self.seed = seed
        self._updates = 0
        self._rows = Rows()
        self._policy = AvalancheClassBalancedBuffer(capacity, adaptive_size=True)

    def add(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor | None = None) -> None:
        """Offer rows; each class's reservoir decides which of its rows are kept."""
        xs, ys, ids, zs = self._rows.offer(x, y, logits)
        if len(ids) == 0:
            return
        _seeded_call(self.seed, self._updates, self._policy.update_from_dataset, _dataset(ids, ys))
        self._updates += 1
        self._rows.accept(xs, ys, ids, zs)
        self._sync()

    def class_counts(self) -> dict[int, int]:
        """Rows held per class."""
        return {int(c): len(g.buffer) for c, g in self._policy.buffer_groups.items()}

    def state_meta(self) -> dict[str, Any]:
        return {
            **_common_meta(self),
            # set iteration order decides which classes get the remainder slots
            "seen_classes": [int(c) for c in self._policy.seen_classes],
            "groups": self._group_meta(),
        }

    def load(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Restore a saved state (an empty ``meta`` means nothing was saved: no-op).

        See :meth:`ReservoirBuffer.load`.
        """
        if not meta:
            return
        _check_meta(meta, self.kind)
        policy = AvalancheClassBalancedBuffer(int(meta.get("capacity", 0)) or 1, adaptive_size=True)
        policy.seen_classes = set()
        for c in meta.get("seen_classes", []):
            policy.seen_classes.add(int(c))
        self._load_groups(policy, tensors, meta)


class ExperienceBalancedBuffer(_Grouped):
    """At most ``capacity`` rows, split evenly over the experiences seen so far.

    Wraps avalanche's ``ExperienceBalancedBuffer`` with adaptive size. An experience is
    one ``add`` call (in the daemon: the training rows of one retrain), so old
    distributions keep their share however much data later ones bring. With ``k``
    experiences each gets ``capacity // k`` slots (the remainder goes to the first),
    filled by reservoir sampling within the experience.

    Parameters
    ----------
    capacity
        Maximum number of rows held.
    seed
        Seed of the reservoir keys.

    Examples
    --------
    >>> buf = ExperienceBalancedBuffer(capacity=10, seed=0)
    >>> buf.add(torch.zeros(100, 2), torch.zeros(100).long())
    >>> buf.add(torch.ones(5, 2), torch.ones(5).long())
    >>> buf.experience_counts()
    [5, 5]
    """

    kind = "experience_balanced"

    def __init__(self, capacity: int, seed: int) -> None:
        _check_capacity(capacity)
        self.capacity = capacity
        self.seed = seed
        self._updates = 0
        self._rows = Rows()
        self._policy = AvalancheExperienceBalancedBuffer(capacity, adaptive_size=True)

    def add(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor | None = None) -> None:
        """Offer rows as one new experience; older experiences shrink to make room."""
        xs, ys, ids, zs = self._rows.offer(x, y, logits)
        if len(ids) == 0:
            return
        experience = _Experience(_dataset(ids, ys))
        _seeded_call(self.seed, self._updates, self._policy.post_adapt, None, experience)
        self._updates += 1
        self._rows.accept(xs, ys, ids, zs)
        self._sync()

    def experience_counts(self) -> list[int]:
        """Rows held per experience, oldest first."""
        return [len(g.buffer) for g in self._policy.buffer_groups.values()]

    def state_meta(self) -> dict[str, Any]:
        return {**_common_meta(self), "groups": self._group_meta()}

    def load(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Restore a saved state (an empty ``meta`` means nothing was saved: no-op).

        See :meth:`ReservoirBuffer.load`.
        """
        if not meta:
            return
        _check_meta(meta, self.kind)
        capacity = int(meta.get("capacity", 0)) or 1
        policy = AvalancheExperienceBalancedBuffer(capacity, adaptive_size=True)
        self._load_groups(policy, tensors, meta)
        _set_experience_count(self._policy, len(self._policy.buffer_groups))
