"""A retrain on several processes: the retrain child launches and watches its workers.

With ``retrain.distributed`` asking for more than one process, the retrain child
(:mod:`runtime.training.retrain_job`) writes the job to a directory: the config and seed
(``job.json``), the champion's weights, the training rows and the rehearsal buffer,
sampled once here (``inputs.safetensors``: the same rows whatever N is). It runs
``python -m torch.distributed.run`` (standalone on one host, or the configured
rendezvous), which starts the workers (:mod:`runtime.training.ddp_worker`); it turns rank
0's progress lines into progress callbacks while they train, and reads back rank 0's
weights, buffer logits (DER fills them) and result.

A worker's failure ends the run (after ``max_restarts`` elastic restarts, each resuming
from the last epoch checkpoint) with :class:`WorkerFailed`, naming the rank the agent saw
fail first. The agent dies with the retrain child (``PR_SET_PDEATHSIG``) and the workers
with the agent, so a kill of the retrain child leaves no process behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

import runtime
from runtime.store.atomic import write_json_atomic
from runtime.training.settings import DistributedConfig
from strategies.base import Progress, RehearsalBuffer, TrainResult

POLL_SECONDS = 0.2
PR_SET_PDEATHSIG = 1


class WorkerFailed(RuntimeError):
    """A worker of a distributed retrain failed; the message names its rank."""


def backend(d: DistributedConfig, device: str) -> str:
    """The backend the workers use for ``retrain.device`` (``auto``: CUDA if present)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return d.backend_for(device)


def command(d: DistributedConfig, job_dir: Path) -> list[str]:
    """The ``torch.distributed.run`` command line that starts the workers of ``job_dir``."""
    cmd = [sys.executable, "-m", "torch.distributed.run",
           f"--nproc_per_node={d.nproc_per_node}", f"--max_restarts={d.max_restarts}",
           "--monitor_interval=0.5"]
    if d.rdzv_endpoint is None:
        cmd.append("--standalone")
    else:
        cmd += [f"--nnodes={d.nnodes}", f"--rdzv_endpoint={d.rdzv_endpoint}"]
        if d.rdzv_backend is not None:
            cmd.append(f"--rdzv_backend={d.rdzv_backend}")
    return [*cmd, "-m", "runtime.training.ddp_worker", str(job_dir)]


def _write_job(job_dir: Path, job: dict[str, Any], model: nn.Module, x: torch.Tensor,
               y: torch.Tensor, buffer: RehearsalBuffer) -> None:
    bx, by = buffer.tensors()
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone()
               for k, v in model.state_dict().items()}
    tensors.update({"x": x.contiguous(), "y": y.contiguous(), "buffer.x": bx.contiguous(),
                    "buffer.y": by.contiguous()})
    logits = buffer.logits()
    if logits is not None:
        tensors["buffer.logits"] = logits.contiguous()
    save_file(tensors, str(job_dir / "inputs.safetensors"))
    write_json_atomic(job_dir / "job.json", job)


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _relay(path: Path, done: int, progress: Callable[[Progress], None] | None) -> int:
    """Call ``progress`` for the complete lines of ``path`` past byte ``done``."""
    try:
        with path.open("rb") as f:
            f.seek(done)
            chunk = f.read()
    except FileNotFoundError:
        return done
    end = chunk.rfind(b"\n") + 1
    for line in chunk[:end].splitlines():
        if progress is not None:
            progress(Progress(**json.loads(line)))
    return done + end


def failure(job_dir: Path, log: str, code: int) -> str:
    """One line: which rank failed first (the agent's root cause) and how."""
    root = log[log.rfind("Root Cause"):] if "Root Cause" in log else log
    rank = re.search(r"rank\s*:\s*(\d+)", root)
    exit_code = re.search(r"exitcode\s*:\s*(-?\d+)", root)
    if rank is None:
        tail = log.strip().splitlines()[-1:] or [""]
        return f"distributed retrain failed (torch.distributed.run exit code {code}): {tail[0]}"
    r = int(rank.group(1))
    how = f"exit code {exit_code.group(1)}" if exit_code else "failed"
    if exit_code and int(exit_code.group(1)) < 0:
        how = f"killed by signal {signal.Signals(-int(exit_code.group(1))).name}"
    err = job_dir / f"rank{r}.error"
    said = f": {err.read_text().splitlines()[0]}" if err.exists() else ""
    return f"distributed worker rank {r} {how}{said}"


def _launch(d: DistributedConfig, job_dir: Path,
            progress: Callable[[Progress], None] | None) -> None:
    """Run the workers to the end, relaying progress; raises :class:`WorkerFailed`."""
    root = str(Path(runtime.__file__).resolve().parents[1])  # workers import this code
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH")) if p),
        # each restart round gets a store of its own: with the agent's store shared
        # across rounds a restarted rank can read the dead round's peer address and fail
        # with "Connection refused" (pytorch/pytorch#135712, still so in 2.14)
        "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
    log_path = job_dir / "torchrun.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command(d, job_dir), stdout=log, stderr=subprocess.STDOUT,
                                env=env, preexec_fn=_die_with_parent)
    done = 0
    try:
        while (code := proc.poll()) is None:
            done = _relay(job_dir / "progress.jsonl", done, progress)
            time.sleep(POLL_SECONDS)
    finally:
        if proc.poll() is None:  # this process is being torn down: take the agent along
            proc.kill()
            proc.wait()
    _relay(job_dir / "progress.jsonl", done, progress)
    if code != 0 or not (job_dir / "result.json").exists():
        raise WorkerFailed(failure(job_dir, log_path.read_text(errors="replace"), code))


@contextlib.contextmanager
def _job_dir(checkpoint: str | None) -> Iterator[Path]:
    """Beside the checkpoint directory (``<trigger>.ddp``), else a temporary one;
    removed afterwards."""
    if checkpoint is None:
        with tempfile.TemporaryDirectory(prefix="driftloop-ddp-") as tmp:
            yield Path(tmp)
        return
    path = Path(checkpoint).with_suffix(".ddp")
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def train(
    d: DistributedConfig,
    job: dict[str, Any],
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    buffer: RehearsalBuffer,
    progress: Callable[[Progress], None] | None,
) -> TrainResult:
    """Train ``model`` in place on ``nproc_per_node`` workers; ``job`` holds ``config``,
    ``seed``, ``meta``, ``device``, ``checkpoint``. Buffer logits the workers set are
    copied into ``buffer``. ``extra`` gains ``world_size`` and ``backend``."""
    chosen = backend(d, job["device"])
    with _job_dir(job["checkpoint"]) as job_dir:
        _write_job(job_dir, {**job, "backend": chosen, "timeout_seconds": d.timeout_seconds},
                   model, x, y, buffer)
        _launch(d, job_dir, progress)
        res = json.loads((job_dir / "result.json").read_text())
        out = load_file(str(job_dir / "output.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in out.items() if k.startswith("model.")})
    if "buffer.logits" in out:
        buffer.set_logits(out["buffer.logits"])
    extra = {**res["extra"], "world_size": res["world_size"], "backend": res["backend"]}
    return TrainResult(samples_processed=res["samples_processed"], steps=res["steps"],
                       epochs=res["epochs"], seconds=res["seconds"],
                       final_loss=res["final_loss"], stopped_by=res["stopped_by"], extra=extra)
