"""A version's files: serialised as safetensors, checked against the registry's record.

A file verifies when its size and sha256 match the database row's ``meta["files"]``
record and it parses as what it claims to be: a safetensors header (read as JSON, never
unpickled) whose tensors tile the data exactly, with the dtypes and shapes recorded at
save time (versions saved before shapes were recorded are checked for layout only).
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import save as st_save


class ModelVersion(Protocol):
    """What the file checks (and retention) read of a version: the shape of
    :class:`runtime.store.versions.ModelVersion`, which imports this module (a protocol
    keeps the two free of an import cycle)."""

    @property
    def version(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def meta(self) -> Mapping[str, Any]: ...

MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit
_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4,
    "U64": 8, "I64": 8, "F64": 8,
}  # fmt: skip


class FileProblem(Exception):
    """A file is not what its record says (the registry raises it as IntegrityError)."""


def check_record(mv: ModelVersion, stem: str, size: int, digest: str) -> None:
    """Size and sha256 of ``stem`` against the database's record (FileProblem if not)."""
    record = mv.meta["files"][stem]
    name = f"{stem}.safetensors"
    if size != record["bytes"]:
        raise FileProblem(
            f"model {mv.version}: {name} has {size} bytes, "
            f"{record['bytes']} were recorded (truncated or replaced)"
        )
    if digest != record["sha256"]:
        raise FileProblem(
            f"model {mv.version}: {name} sha256 {digest} does not match "
            f"the recorded {record['sha256']}"
        )


def stat_key(mv: ModelVersion, paths: list[Path]) -> tuple[Any, ...] | None:
    """What identifies ``mv``'s files as last verified: its record and each file's inode,
    size, mtime and ctime (a rewrite, rename or ``touch`` changes ctime); ``None`` when
    a file cannot be stat'ed (then it is verified in full)."""
    try:
        stats = [p.stat() for p in paths]
    except OSError:
        return None
    signature = tuple((s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns) for s in stats)
    return mv.version, json.dumps(mv.meta["files"], sort_keys=True), signature


def serialize(version: str, stem: str, group: Mapping[str, torch.Tensor]) -> bytes:
    """One tensor group as safetensors bytes (contiguous CPU copies)."""
    if not isinstance(group, Mapping):
        raise TypeError(f"{version}: tensors[{stem!r}] must be a dict of tensors")
    cpu: dict[str, torch.Tensor] = {}
    for name, tensor in group.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{version}: tensors[{stem!r}][{name!r}] is not a named tensor")
        # clone(): safetensors refuses tensors sharing storage (tied weights, views).
        cpu[name] = tensor.detach().to("cpu").contiguous().clone()
    return st_save(cpu, metadata={"format": "pt"})


def record(data: bytes) -> dict[str, Any]:
    """The database's record of one file: sha256, size and ``name -> [dtype, shape]``."""
    layout = _layout(_header(data[:8], data[8:], len(data)))
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "tensors": layout}


def check_format(mv: ModelVersion, stem: str, path: Path) -> None:
    """``path`` parses as safetensors and holds the recorded tensors (FileProblem if not)."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        text = fh.read(min(length, MAX_HEADER_BYTES))
    _check(mv, stem, head, text, size)


def check_format_bytes(mv: ModelVersion, stem: str, data: bytes) -> None:
    """:func:`check_format` of a file already read."""
    _check(mv, stem, data[:8], data[8:], len(data))


def _check(mv: ModelVersion, stem: str, head: bytes, text: bytes, size: int) -> None:
    try:
        layout = _layout(_header(head, text, size))
    except FileProblem as err:
        raise FileProblem(
            f"model {mv.version}: {stem}.safetensors is not a readable safetensors file ({err})"
        ) from None
    recorded = mv.meta["files"][stem].get("tensors")
    if recorded is not None and recorded != layout:
        diff = sorted(set(recorded) ^ set(layout)) or sorted(
            n for n in layout if layout[n] != recorded.get(n)
        )
        raise FileProblem(
            f"model {mv.version}: {stem}.safetensors holds tensors other than recorded "
            f"(differing: {', '.join(diff[:5])})"
        )


def _header(head: bytes, text: bytes, size: int) -> dict[str, Any]:
    """The parsed header of a file of ``size`` bytes, checked for layout."""
    if len(head) < 8:
        raise FileProblem("shorter than a header")
    length = struct.unpack("<Q", head)[0]
    if length > MAX_HEADER_BYTES or 8 + length > size or len(text) < length:
        raise FileProblem(f"its header claims {length} bytes in a file of {size}")
    try:
        header = json.loads(text[:length].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise FileProblem("its header is not JSON") from None
    if not isinstance(header, dict):
        raise FileProblem("its header is not a JSON object")
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or not _tensor_entry(info):
            raise FileProblem(f"tensor {name!r} has a malformed entry")
        begin, end = info["data_offsets"]
        count = math.prod(info["shape"])
        if end - begin != count * _DTYPE_BYTES[info["dtype"]]:
            raise FileProblem(f"tensor {name!r} spans {end - begin} bytes for its shape")
        spans.append((begin, end))
    spans.sort()
    at = 0
    for begin, end in spans:
        if begin != at:
            raise FileProblem("its tensors overlap or leave gaps")
        at = end
    if at != size - 8 - length:
        raise FileProblem(f"its tensors cover {at} of {size - 8 - length} data bytes")
    return header


def _tensor_entry(info: dict[str, Any]) -> bool:
    shape, offsets = info.get("shape"), info.get("data_offsets")
    return (
        info.get("dtype") in _DTYPE_BYTES
        and isinstance(shape, list)
        and all(isinstance(d, int) and d >= 0 for d in shape)
        and isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(o, int) for o in offsets)
        and 0 <= offsets[0] <= offsets[1]
    )


def _layout(header: Mapping[str, Any]) -> dict[str, list[Any]]:
    return {
        name: [info["dtype"], list(info["shape"])]
        for name, info in sorted(header.items())
        if name != "__metadata__"
    }
