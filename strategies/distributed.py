"""Data-parallel training inside :func:`strategies.loop.fit` (torch.distributed, DDP).

When the loop runs in a process of an initialised process group of more than one
process (workers launched by ``torch.distributed.run``), each process trains the same
model wrapped in ``DistributedDataParallel`` on its shard of the new rows and of the
rehearsal rows, both cut by ``DistributedSampler`` with ``set_epoch`` every epoch. The
shards depend only on the seed, the epoch, the rank and the world size, never on a
generator's running state, so a run resumed from an epoch checkpoint shards the same
way whatever world size wrote the checkpoint.

Semantics: ``batch_size`` is per process; the effective batch is ``batch_size × N`` and
an epoch has about ``1/N`` as many steps; the learning rate is not scaled. Without a
process group (or with one process) nothing here is used and the loop is the
single-process loop, bit for bit.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler


def world() -> tuple[int, int] | None:
    """``(rank, world_size)`` inside a process group of more than one process, else ``None``."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    size = dist.get_world_size()
    return (dist.get_rank(), size) if size > 1 else None


def is_writer() -> bool:
    """Whether this process writes checkpoints and reports (rank 0, or no group)."""
    w = world()
    return w is None or w[0] == 0


def shard(n: int, seed: int, epoch: int, rank: int, size: int) -> torch.Tensor:
    """This rank's rows of ``n`` for ``epoch``, in shuffled order: every rank gets
    ``ceil(n / size)`` (``DistributedSampler`` pads by repeating rows), so every rank
    takes the same number of steps (a rank with fewer would leave the others waiting).

    >>> a, b = shard(5, 0, 0, 0, 2), shard(5, 0, 0, 1, 2)
    >>> len(a), len(b), sorted(set(a.tolist()) | set(b.tolist()))
    (3, 3, [0, 1, 2, 3, 4])
    """
    sampler: DistributedSampler[int] = DistributedSampler(
        range(n), num_replicas=size, rank=rank, shuffle=True,  # type: ignore[arg-type]
        seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    return torch.tensor(list(iter(sampler)), dtype=torch.int64)


def rehearsal_draws(n: int, n_batches: int, per_batch: int, seed: int, epoch: int,
                    rank: int, size: int) -> torch.Tensor:
    """``[n_batches, per_batch]`` rehearsal rows for this rank's epoch: uniform draws
    with replacement from this rank's ``DistributedSampler`` shard of the ``n`` rows."""
    own = shard(n, seed ^ 0x7E4EA75, epoch, rank, size)
    gen = torch.Generator().manual_seed((seed * 1_000_003 + epoch * 8191 + rank) % 2**63)
    return own[torch.randint(0, len(own), (n_batches, per_batch), generator=gen)]


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in ``DistributedDataParallel`` (its trainable parameters as they are
    now: the trainable set may not change afterwards)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def any_rank(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` is true on any rank (a time budget must stop every rank at the
    same step, or the others wait in their next all-reduce until the timeout)."""
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


class TensorBuffer:
    """A rehearsal buffer's rows as plain tensors, read-only but for their logits.

    What a worker of a distributed run trains from: the buffer is sampled once by the
    process that launches the workers and handed to each as a file, so every rank
    replays the same rows whatever N is (avalanche, behind the real buffers, refuses to
    be imported in a non-zero rank). DER's :func:`~strategies.der.fill_logits` may set
    the logits; the launcher copies them back into the real buffer.

    >>> b = TensorBuffer(torch.zeros(3, 2), torch.tensor([0, 1, 0]))
    >>> len(b), b.logits() is None
    (3, True)
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor,
                 logits: torch.Tensor | None = None) -> None:
        self._x, self._y, self._logits = x, y, logits
        self.capacity = len(y)

    def __len__(self) -> int:
        return len(self._y)

    def add(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor | None = None) -> None:
        raise TypeError("a worker's rehearsal rows are fixed; the launcher's buffer takes rows")

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._x, self._y

    def logits(self) -> torch.Tensor | None:
        return self._logits

    def set_logits(self, logits: torch.Tensor) -> None:
        self._logits = logits

    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = {"x": self._x, "y": self._y}
        return out if self._logits is None else {**out, "logits": self._logits}

    def state_meta(self) -> dict[str, Any]:
        return {"kind": "tensors", "rows": len(self)}

    def load(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self._x, self._y, self._logits = tensors["x"], tensors["y"], tensors.get("logits")
        self.capacity = len(self._y)
