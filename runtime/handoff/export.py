"""A model version in forms a serving stack loads without driftloop, with a manifest.

:func:`export_version` writes, into one directory, a file per format and
``manifest.json``: the version, the sha256 and size of every file, the input schema
(feature order, dtype, preprocessing), the classes, and the torch / onnx versions.

- ``safetensors``: the state dict (``model.safetensors``); the user's own module, or the
  built-in architecture the manifest's ``model`` describes, loads it.
- ``torchscript``: ``torch.jit.trace`` of the model (``model.torchscript.pt``).
- ``onnx``: ``torch.onnx.export`` (the TorchScript-based exporter, ``dynamo=False``),
  checked by ``onnx.checker`` and run by onnxruntime (``model.onnx``).

Input ``x`` is ``float32 [batch, n_features]``, output ``logits`` ``float32 [batch,
n_classes]``; the batch size is free. A model whose forward depends on its data in ways a
trace would freeze may offer ``exportable() -> nn.Module`` giving the same logits
traceably (the text model does). Every format's outputs are compared with PyTorch's on
the version's golden rows and on a batch of one row; an export that differs by more than
:data:`TOLERANCE` is refused, and the largest difference is recorded in the manifest.

:func:`publish` is what the daemon does on every new champion: the export goes to
``root/<version>/`` (written under a temporary name, then renamed), ``root/current`` is
a symlink swapped atomically onto it, and old exports are pruned.

Exceptions
----------
ExportError
    One line: a format that cannot export this model (and why), outputs that differ, a
    directory that cannot be written.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import os
import re
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.jit import TracerWarning  # type: ignore[attr-defined]

from runtime.config import DriftloopConfig
from runtime.handoff.settings import ExportConfig
from runtime.store.atomic import fsync_dir, write_bytes_atomic, write_json_atomic
from runtime.store.db import utcnow
from runtime.store.unit import golden_sets, load_unit
from runtime.store.versions import Registry
from strategies.text_tokenizer import SentenceTokenizer

__all__ = [
    "CURRENT",
    "FILES",
    "FORMATS",
    "MANIFEST",
    "TOLERANCE",
    "Export",
    "ExportError",
    "current_version",
    "export_model",
    "export_version",
    "publish",
    "writable",
]

log = logging.getLogger(__name__)

FORMATS = ("safetensors", "torchscript", "onnx")
FILES = {"safetensors": "model.safetensors", "torchscript": "model.torchscript.pt",
         "onnx": "model.onnx"}
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
CURRENT = "current"
TOLERANCE = 1e-4
"""The largest absolute difference from PyTorch's logits an export may show."""
CHECK_ROWS = 1000
_VERSION_DIR = re.compile(r"^v[1-9][0-9]*$")


class ExportError(ValueError):
    """The export cannot be made or was refused; the message is one line."""


@dataclass(frozen=True)
class Export:
    """What was written: the directory, its manifest, seconds per format."""

    version: str
    dir: Path
    manifest: dict[str, Any]
    seconds: dict[str, float]


# -- one version ---------------------------------------------------------------------------
def export_version(
    cfg: DriftloopConfig,
    registry: Registry,
    version: str,
    formats: Sequence[str],
    out: Path,
    *,
    opset: int = 17,
) -> Export:
    """Export registered ``version`` into ``out`` (created; files replaced one by one)."""
    try:
        unit = load_unit(registry, cfg, version)
    except KeyError:
        raise ExportError(f"unknown model version {version!r}") from None
    gold = golden_sets(registry, unit.golden_index)
    rows = [g[0] for g in gold.values()]
    x = np.concatenate(rows) if rows else unit.reference
    if not len(x):
        raise ExportError(f"{version} has no golden rows (nor a reference window) to check on")
    meta = unit.meta
    texts = {f"tokenizer-{n}.json": t.spec.encode("utf-8") for n, t in unit.tokenizers.items()}
    describe = {
        "version": version,
        "input": _input(cfg, unit.tokenizers),
        "output": {
            "name": "logits", "dtype": "float32", "shape": [None, len(cfg.schema.classes)],
            "classes": list(cfg.schema.classes),
            "meaning": "unnormalised scores: softmax gives the probabilities, argmax the "
            "position in classes",
        },
        "model": cfg.model.model_dump(mode="json"),
        "lineage": {k: meta.get(k) for k in ("parent", "created_at", "trigger_id", "strategy")
                    if k in meta} | ({"adopted": meta["adopted"]} if "adopted" in meta else {}),
        "registry_sha256": meta.get("files", {}).get("model", {}).get("sha256"),
        "checked_on": {"rows": min(len(x), CHECK_ROWS), "golden_sets": sorted(gold),
                       "tolerance": TOLERANCE},
    }
    return export_model(unit.model, x[:CHECK_ROWS], formats, out, describe, opset=opset,
                        extra_files=texts)


def _input(cfg: DriftloopConfig, texts: Mapping[str, SentenceTokenizer]) -> dict[str, Any]:
    from strategies.models import CNNConfig, MLPConfig
    from strategies.text import TextConfig

    model = cfg.model
    if isinstance(model, TextConfig):
        prep = (f"token ids of all-MiniLM-L6-v2's WordPiece tokenizer ([CLS] … [SEP], padded "
                f"with 0 to {len(cfg.schema.features)}), as float32"
                + ("; text_columns names each sentence's tokenizer file" if texts else ""))
    elif isinstance(model, MLPConfig | CNNConfig):
        prep = "none: the standardisation (mean, std) is inside the model"
    else:
        prep = "none beyond the model's own forward"
    out: dict[str, Any] = {
        "name": "x", "dtype": "float32", "shape": [None, len(cfg.schema.features)],
        "features": list(cfg.schema.features), "preprocessing": prep,
        "missing_values": "NaN allowed" if cfg.schema.allow_nan else "refused (finite only)",
    }
    if texts:
        # each sentence becomes its token-id features: the tokenizer (tokenizers' JSON,
        # Tokenizer.from_str) with truncation and padding to max_length
        out["text_columns"] = {
            name: {**t.describe(), "features": cfg.schema.text_columns[name],
                   "file": f"tokenizer-{name}.json", "pad_id": 0}
            for name, t in texts.items()
        }
    return out


def export_model(
    model: nn.Module,
    x: np.ndarray,
    formats: Sequence[str],
    out: Path,
    describe: dict[str, Any],
    *,
    opset: int = 17,
    extra_files: Mapping[str, bytes] | None = None,
) -> Export:
    """Write ``model`` in ``formats`` to ``out`` plus the manifest (``describe`` merged in),
    each format checked against PyTorch on the rows ``x``; ``extra_files`` (name → bytes,
    a text column's tokenizer) are written beside and listed in the manifest."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ExportError(f"unknown export format {unknown[0] if unknown else None!r} "
                          f"(one of {', '.join(FORMATS)})")
    writable(out)
    model = model.eval()
    xs = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)
    with torch.no_grad():
        want = model(xs).numpy()
        want_one = model(xs[:1]).numpy()
    files: dict[str, dict[str, Any]] = {}
    done: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    for fmt in formats:
        path = out / FILES[fmt]
        began = time.perf_counter()
        try:
            info, run = _EXPORTERS[fmt](model, xs, path, opset)
            diff = max(_diff(run(xs), want), _diff(run(xs[:1]), want_one))
        except ExportError:
            path.unlink(missing_ok=True)
            raise
        except Exception as err:
            path.unlink(missing_ok=True)
            raise ExportError(f"{fmt}: cannot export {type(model).__name__}: "
                              f"{type(err).__name__}: {_first_line(err)}") from err
        if not diff <= TOLERANCE:  # NaN refused too
            path.unlink(missing_ok=True)
            hint = f" ({info['trace_warnings'][0]})" if info.get("trace_warnings") else ""
            raise ExportError(
                f"{fmt}: outputs differ from PyTorch's by {diff:.3g} on the golden rows "
                f"(limit {TOLERANCE:g}): export refused{hint}"
            )
        seconds[fmt] = round(time.perf_counter() - began, 3)
        files[path.name] = {"format": fmt, **_digest(path)}
        done[fmt] = {"file": path.name, **info, "max_abs_diff": diff, "seconds": seconds[fmt]}
    for name, data in (extra_files or {}).items():
        write_bytes_atomic(out / name, data)
        files[name] = {"format": "tokenizer", **_digest(out / name)}
    manifest = {
        "manifest_version": MANIFEST_VERSION, **describe, "exported_at": utcnow(),
        "files": files, "formats": done, "versions": _versions(formats),
    }
    write_json_atomic(out / MANIFEST, manifest)
    fsync_dir(out)
    return Export(version=str(describe.get("version")), dir=out, manifest=manifest,
                  seconds=seconds)


def writable(out: Path) -> None:
    """Create ``out`` and write a probe file in it; ExportError (one line) if not."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ExportError(f"cannot write exports to {out}: {err.strerror or err}") from None


def _diff(got: np.ndarray, want: np.ndarray) -> float:
    if got.shape != want.shape:
        return float("inf")
    return float(np.max(np.abs(got.astype(np.float64) - want))) if want.size else 0.0


def _digest(path: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return {"sha256": h.hexdigest(), "bytes": path.stat().st_size}


def _versions(formats: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {"torch": str(torch.__version__)}
    if "onnx" in formats:
        import onnx
        import onnxruntime

        out |= {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
    if "safetensors" in formats:
        import safetensors

        out["safetensors"] = safetensors.__version__
    return out


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else ""


Runner = Callable[[torch.Tensor], np.ndarray]


def _traceable(model: nn.Module) -> nn.Module:
    form = getattr(model, "exportable", None)
    return form().eval() if callable(form) else model


def _safetensors(model: nn.Module, xs: torch.Tensor, path: Path, _: int) -> tuple[dict[str, Any],
                                                                                   Runner]:
    from safetensors.torch import load, save

    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    write_bytes_atomic(path, save(state, metadata={"format": "pt"}))
    back = copy.deepcopy(model)
    back.load_state_dict(load(path.read_bytes()))
    back.eval()

    def run(x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return back(x).numpy()  # type: ignore[no-any-return]

    return {"tensors": len(state)}, run


@contextlib.contextmanager
def _tracing() -> Iterator[list[warnings.WarningMessage]]:
    """Record the tracer's warnings; torch's notices that TorchScript and the
    TorchScript-based ONNX exporter are deprecated are not the model's problem."""
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        yield caught


def _torchscript(model: nn.Module, xs: torch.Tensor, path: Path, _: int) -> tuple[dict[str, Any],
                                                                                  Runner]:
    example = xs[: min(len(xs), 8)]
    tmp = path.with_name(f".{path.name}.tmp")
    with _tracing() as caught:
        traced = torch.jit.trace(  # type: ignore[no-untyped-call]
            _traceable(model), (example,), check_trace=False
        )
        torch.jit.save(traced, str(tmp))
        os.replace(tmp, path)
        loaded = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]

    def run(x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return loaded(x).numpy()  # type: ignore[no-any-return]

    return {"method": "trace", "trace_warnings": _tracer_warnings(caught)}, run


def _onnx(model: nn.Module, xs: torch.Tensor, path: Path, opset: int) -> tuple[dict[str, Any],
                                                                             Runner]:
    import onnx
    import onnxruntime as ort

    example = xs[: min(len(xs), 8)]
    tmp = path.with_name(f".{path.name}.tmp")
    with _tracing() as caught:
        torch.onnx.export(
            _traceable(model), (example,), str(tmp), dynamo=False, opset_version=opset,
            input_names=["x"], output_names=["logits"],
            dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
        )
    onnx.checker.check_model(str(tmp))
    os.replace(tmp, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor) -> np.ndarray:
        out: np.ndarray = session.run(["logits"], {"x": x.numpy()})[0]
        return out

    return {"opset": opset, "input": "x", "output": "logits",
            "trace_warnings": _tracer_warnings(caught)}, run


def _tracer_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    """What the tracer said about the model (a trace may have frozen a value)."""
    seen: list[str] = []
    for w in caught:
        if issubclass(w.category, TracerWarning):
            line = _first_line(w.message if isinstance(w.message, Warning) else Warning(w.message))
            if line not in seen:
                seen.append(line)
    return seen[:5]


_EXPORTERS: dict[str, Callable[[nn.Module, torch.Tensor, Path, int],
                               tuple[dict[str, Any], Runner]]] = {
    "safetensors": _safetensors, "torchscript": _torchscript, "onnx": _onnx,
}


# -- the champion's directory --------------------------------------------------------------
def current_version(root: Path) -> str | None:
    """The version ``root/current`` points at, or None."""
    try:
        target = os.readlink(root / CURRENT)
    except OSError:
        return None
    name = Path(target).name
    return name if _VERSION_DIR.match(name) else None


def publish(
    cfg: DriftloopConfig, registry: Registry, version: str, settings: ExportConfig
) -> Export:
    """Export ``version`` to ``root/<version>/`` (unless a complete export with these
    formats is there), point ``root/current`` at it, prune old exports."""
    root = settings.dir
    writable(root)
    final = root / version
    done = _complete(final, settings.formats)
    if done is not None:
        export = Export(version=version, dir=final, manifest=done, seconds={})
    else:
        tmp = root / f".tmp-{version}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            export = export_version(cfg, registry, version, settings.formats, tmp,
                                    opset=settings.opset)
            _replace_dir(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        export = Export(version=version, dir=final, manifest=export.manifest,
                        seconds=export.seconds)
    _point(root, version)
    prune(root, settings.keep)
    return export


def _complete(path: Path, formats: Sequence[str]) -> dict[str, Any] | None:
    """The manifest of a finished export of ``formats`` at ``path`` whose files check."""
    import json

    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        for fmt in formats:
            name = manifest["formats"][fmt]["file"]
            if _digest(path / name)["sha256"] != manifest["files"][name]["sha256"]:
                return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return dict(manifest)


def _replace_dir(tmp: Path, final: Path) -> None:
    root = final.parent
    old = root / f".old-{final.name}-{os.getpid()}"
    if final.exists():
        os.rename(final, old)
    os.rename(tmp, final)
    fsync_dir(root)
    shutil.rmtree(old, ignore_errors=True)


def _point(root: Path, version: str) -> None:
    """Swap ``root/current`` onto ``version`` in one rename: a reader sees the old
    target or the new one, never neither."""
    os.utime(root / version)  # pruning keeps the versions most recently current
    if current_version(root) == version:
        return
    link = root / f".current-{os.getpid()}"
    link.unlink(missing_ok=True)
    os.symlink(version, link)
    os.replace(link, root / CURRENT)
    fsync_dir(root)


def prune(root: Path, keep: int) -> list[str]:
    """Remove all but the ``keep`` exports most recently made current (never ``current``'s)."""
    current = current_version(root)
    found = [p for p in root.iterdir() if p.is_dir() and not p.is_symlink()
             and _VERSION_DIR.match(p.name)]
    found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    kept = {current} | {p.name for p in found[:keep]}
    gone = [p.name for p in found if p.name not in kept]
    for name in gone:
        shutil.rmtree(root / name, ignore_errors=True)
    if gone:
        log.info("pruned exports %s from %s", gone, root)
    return gone
