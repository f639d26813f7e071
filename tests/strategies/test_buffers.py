"""The avalanche-backed rehearsal buffers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from strategies.base import RehearsalBuffer
from strategies.registry import BufferConfig, build_buffer, restore_buffer

KINDS = ["reservoir", "class_balanced", "experience_balanced"]


Batch = tuple[torch.Tensor, torch.Tensor]


def _batches(seed: int, sizes: list[int], n_classes: int = 4) -> list[Batch]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(n, 3, generator=g), torch.randint(0, n_classes, (n,), generator=g))
        for n in sizes
    ]


def _same(a: RehearsalBuffer, b: RehearsalBuffer) -> bool:
    ta, tb = a.state_tensors(), b.state_tensors()
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


@pytest.mark.parametrize("kind", KINDS)
def test_is_a_rehearsal_buffer(kind: str) -> None:
    buf = build_buffer(BufferConfig(kind=kind, capacity=10), seed=0)  # type: ignore[arg-type]
    assert isinstance(buf, RehearsalBuffer)
    x, y = buf.tensors()
    assert len(buf) == 0 and x.shape[0] == 0 and y.dtype == torch.int64


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    capacity=st.integers(1, 40),
    sizes=st.lists(st.integers(0, 60), min_size=1, max_size=6),
    n_classes=st.integers(1, 6),
)
def test_size_never_exceeds_capacity(
    kind: str, capacity: int, sizes: list[int], n_classes: int
) -> None:
    buf = build_buffer(BufferConfig(kind=kind, capacity=capacity), seed=1)  # type: ignore[arg-type]
    offered = 0
    for x, y in _batches(0, sizes, n_classes):
        buf.add(x, y)
        offered += len(y)
        assert len(buf) <= capacity
        bx, by = buf.tensors()
        assert len(bx) == len(by) == len(buf)
        assert bx.dtype == torch.float32 and by.dtype == torch.int64
    if kind == "reservoir":
        assert len(buf) == min(capacity, offered)


@pytest.mark.parametrize("kind", KINDS)
def test_kept_rows_are_offered_rows(kind: str) -> None:
    buf = build_buffer(BufferConfig(kind=kind, capacity=20), seed=0)  # type: ignore[arg-type]
    batches = _batches(0, [30, 30, 30])
    for x, y in batches:
        buf.add(x, y)
    all_x = torch.cat([x for x, _ in batches])
    all_y = torch.cat([y for _, y in batches])
    bx, by = buf.tensors()
    for row, label in zip(bx, by, strict=True):
        match = (all_x == row).all(dim=1).nonzero()
        assert len(match) == 1 and all_y[match[0, 0]] == label


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_buffer_and_global_rng_untouched(kind: str) -> None:
    cfg = BufferConfig(kind=kind, capacity=15)  # type: ignore[arg-type]
    a, b, c = build_buffer(cfg, seed=5), build_buffer(cfg, seed=5), build_buffer(cfg, seed=6)
    before = torch.random.get_rng_state()
    for x, y in _batches(0, [20, 20, 20]):
        a.add(x, y)
        b.add(x, y)
        c.add(x, y)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert _same(a, b)
    assert not _same(a, c)


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip_continues_identically(kind: str, tmp_path: Path) -> None:
    cfg = BufferConfig(kind=kind, capacity=25)  # type: ignore[arg-type]
    batches = _batches(2, [30, 10, 40, 25, 50, 5])
    straight = build_buffer(cfg, seed=9)
    for x, y in batches:
        straight.add(x, y)

    first = build_buffer(cfg, seed=9)
    for x, y in batches[:3]:
        first.add(x, y)
    # persisted the way the registry does it: safetensors + JSON, nothing pickled
    save_file({k: v.contiguous() for k, v in first.state_tensors().items()}, tmp_path / "b.st")
    (tmp_path / "b.json").write_text(json.dumps(first.state_meta()))

    resumed = build_buffer(cfg, seed=12345)  # the saved seed wins
    resumed.load(load_file(tmp_path / "b.st"), json.loads((tmp_path / "b.json").read_text()))
    assert _same(first, resumed)
    for x, y in batches[3:]:
        resumed.add(x, y)
    assert _same(straight, resumed)
    assert straight.state_meta() == resumed.state_meta()


@pytest.mark.parametrize("kind", KINDS)
def test_empty_buffer_round_trip_and_empty_meta(kind: str, tmp_path: Path) -> None:
    cfg = BufferConfig(kind=kind, capacity=5)  # type: ignore[arg-type]
    empty = build_buffer(cfg, seed=0)
    save_file(empty.state_tensors(), tmp_path / "b.st")
    back = restore_buffer(load_file(tmp_path / "b.st"), json.loads(json.dumps(empty.state_meta())))
    assert len(back) == 0
    fresh = build_buffer(cfg, seed=0)
    for buf in (back, fresh):
        buf.add(*_batches(0, [8])[0])
    assert len(back) > 0 and _same(back, fresh)
    untouched = build_buffer(cfg, seed=0)
    untouched.load({}, {})  # nothing saved: stays a fresh buffer
    assert len(untouched) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_load_into_smaller_capacity_shrinks(kind: str) -> None:
    big = build_buffer(BufferConfig(kind=kind, capacity=40), seed=0)  # type: ignore[arg-type]
    for x, y in _batches(0, [50, 50]):
        big.add(x, y)
    small = build_buffer(BufferConfig(kind=kind, capacity=10), seed=0)  # type: ignore[arg-type]
    small.load(big.state_tensors(), big.state_meta())
    assert len(small) == 10
    assert small.state_meta()["capacity"] == 10


def test_load_rejects_other_kind_and_bad_state() -> None:
    res = build_buffer(BufferConfig(kind="reservoir", capacity=5), seed=0)
    res.add(*_batches(0, [8])[0])
    cb = build_buffer(BufferConfig(kind="class_balanced", capacity=5), seed=0)
    with pytest.raises(ValueError, match="kind 'reservoir'"):
        cb.load(res.state_tensors(), res.state_meta())
    tensors = res.state_tensors()
    del tensors["weight"]
    with pytest.raises(ValueError, match="missing 'weight'"):
        build_buffer(BufferConfig(capacity=5), seed=0).load(tensors, res.state_meta())


def test_rejects_rows_of_another_width() -> None:
    buf = build_buffer(BufferConfig(capacity=5), seed=0)
    buf.add(torch.randn(4, 3), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="3 features"):
        buf.add(torch.randn(4, 2), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="integers"):
        buf.add(torch.randn(4, 3), torch.zeros(4))


def test_class_balanced_keeps_classes_balanced() -> None:
    buf = build_buffer(BufferConfig(kind="class_balanced", capacity=30), seed=0)
    x = torch.randn(1000, 2)
    y = torch.cat([torch.zeros(900), torch.ones(100)]).long()  # 9:1 imbalance
    buf.add(x, y)
    assert torch.bincount(buf.tensors()[1]).tolist() == [15, 15]
    buf.add(torch.randn(50, 2), torch.full((50,), 2))  # a new class takes its share
    assert torch.bincount(buf.tensors()[1]).tolist() == [10, 10, 10]
    # a reservoir over the same stream follows the imbalance instead
    res = build_buffer(BufferConfig(kind="reservoir", capacity=30), seed=0)
    res.add(x, y)
    assert torch.bincount(res.tensors()[1], minlength=2)[0] > 20


def test_experience_balanced_gives_each_add_an_equal_share() -> None:
    buf = build_buffer(BufferConfig(kind="experience_balanced", capacity=30), seed=0)
    buf.add(torch.randn(500, 2), torch.zeros(500, dtype=torch.int64))
    assert len(buf) == 30
    buf.add(torch.randn(20, 2), torch.ones(20, dtype=torch.int64))  # a small experience
    buf.add(torch.randn(400, 2), torch.full((400,), 2))
    counts = buf.experience_counts()  # type: ignore[attr-defined]
    assert counts == [10, 10, 10]
    assert torch.bincount(buf.tensors()[1]).tolist() == [10, 10, 10]


@pytest.mark.parametrize("kind", KINDS)
def test_logits_travel_with_their_rows_and_round_trip(kind: str, tmp_path: Path) -> None:
    cfg = BufferConfig(kind=kind, capacity=12)  # type: ignore[arg-type]
    buf = build_buffer(cfg, seed=0)
    batches = _batches(3, [20, 20])
    assert buf.logits() is None
    buf.add(*batches[0])  # no logits: NaN once any row has some
    x1, y1 = batches[1]
    z1 = torch.stack([x1[:, 0], -x1[:, 0]], dim=1)  # logits derived from the row
    buf.add(x1, y1, logits=z1)
    bx, _ = buf.tensors()
    z = buf.logits()
    assert z is not None and z.shape == (len(buf), 2)
    known = torch.isfinite(z).all(dim=1)
    assert torch.equal(z[known, 0], bx[known, 0])  # aligned with their rows
    assert (~known).any() or kind == "reservoir"
    save_file({k: v.contiguous() for k, v in buf.state_tensors().items()}, tmp_path / "b.st")
    back = restore_buffer(load_file(tmp_path / "b.st"), json.loads(json.dumps(buf.state_meta())))
    back_z = back.logits()
    assert back_z is not None and torch.equal(back_z.nan_to_num(7.0), z.nan_to_num(7.0))
    full = torch.zeros(len(buf), 2)
    back.set_logits(full)
    assert torch.equal(back.logits(), full)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="width 2"):
        back.add(x1, y1, logits=torch.zeros(len(x1), 3))
