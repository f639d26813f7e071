"""One worker of a distributed retrain: ``python -m runtime.training.ddp_worker JOB_DIR``.

``torch.distributed.run`` starts ``nproc_per_node`` of these
(:mod:`runtime.training.distributed_job` launches it). Each joins the process group
(with a timeout, so a lost peer raises instead of hanging), rebuilds the champion's model
from the config and ``inputs.safetensors``, and trains it with the configured strategy on
its shard of the rows (:mod:`strategies.distributed`). Rank 0 alone writes the epoch
checkpoints, the progress lines, the trained weights and the result; every rank writes
its pid (tests kill one) and, if it fails, its error.

Each worker dies with its launcher (``PR_SET_PDEATHSIG``): the elastic agent starts
workers in sessions of their own, so a kill of the retrain child's process group would
otherwise leave them running.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def _die_with_launcher() -> None:
    """SIGKILL from the kernel when the agent that started this process dies; exit now
    if it already has (this process was reparented before getting here)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            parent = f.read()
    except OSError:
        return
    if b"torch.distributed.run" not in parent and b"torchrun" not in parent:
        os._exit(1)


if __name__ == "__main__":  # before the imports: they take seconds, the agent may die meanwhile
    _die_with_launcher()

import datetime  # noqa: E402
import json  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from torch import distributed as dist  # noqa: E402

from runtime.config import DriftloopConfig  # noqa: E402
from runtime.store.atomic import write_json_atomic  # noqa: E402
from runtime.store.unit import new_model, preprocessing  # noqa: E402
from strategies.base import (  # noqa: E402
    Budget,
    Progress,
    RegressionLoss,
    TrainRequest,
    TrainResult,
)
from strategies.distributed import TensorBuffer  # noqa: E402
from strategies.registry import build as build_strategy  # noqa: E402


def _device(backend: str, local_rank: int) -> torch.device:
    """nccl: this worker's GPU (``cuda:LOCAL_RANK``); gloo: the CPU."""
    if backend == "nccl":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
        return dev
    return torch.device("cpu")


def _progress_writer(path: Path, rank: int) -> Any:
    """Rank 0's progress callback: one JSON line a report, read by the launcher."""

    def progress(p: Progress) -> None:
        if rank != 0:
            return
        with path.open("a") as f:
            f.write(json.dumps({"epoch": p.epoch, "step": p.step, "samples": p.samples,
                                "loss": p.loss, "seconds": p.seconds,
                                "val_accuracy": p.val_accuracy}) + "\n")

    return None if rank != 0 else progress


def _result_json(result: TrainResult) -> dict[str, Any]:
    extra = {k: v for k, v in result.extra.items() if isinstance(v, int | float | str)}
    return {"samples_processed": result.samples_processed, "steps": result.steps,
            "epochs": result.epochs, "seconds": result.seconds,
            "final_loss": result.final_loss, "stopped_by": result.stopped_by, "extra": extra}


def train(job_dir: Path, rank: int, local_rank: int) -> None:
    """This rank's share of the job in ``job_dir`` (``job.json``, ``inputs.safetensors``)."""
    job = json.loads((job_dir / "job.json").read_text())
    cfg = DriftloopConfig.model_validate(job["config"])
    torch.set_num_threads(cfg.torch_threads)
    backend = job["backend"]
    dev = _device(backend, local_rank)
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=job["timeout_seconds"]))
    try:
        tensors = load_file(str(job_dir / "inputs.safetensors"))
        model = new_model(cfg, prep=preprocessing(job["meta"]))
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        buffer = TensorBuffer(tensors["buffer.x"], tensors["buffer.y"],
                              tensors.get("buffer.logits"))
        b = cfg.retrain.budget
        result = build_strategy(cfg.retrain.strategy).train(TrainRequest(
            model, tensors["x"], tensors["y"], buffer=buffer,
            budget=Budget(epochs=b.epochs, steps=b.steps, seconds=b.seconds),
            seed=int(job["seed"]), progress=_progress_writer(job_dir / "progress.jsonl", rank),
            device=str(dev), checkpoint=job["checkpoint"],
            regression=None if job.get("regression") is None
            else RegressionLoss(**job["regression"])))
        if rank == 0:
            out = {f"model.{k}": v.detach().cpu().contiguous().clone()
                   for k, v in model.state_dict().items()}
            logits = buffer.logits()
            if logits is not None:
                out["buffer.logits"] = logits.contiguous()
            save_file(out, str(job_dir / "output.safetensors"))
            write_json_atomic(job_dir / "result.json",
                              {**_result_json(result), "backend": backend,
                               "world_size": dist.get_world_size()})
        dist.barrier()
    finally:
        dist.destroy_process_group()


def main() -> int:
    job_dir = Path(sys.argv[1])
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    (job_dir / f"rank{rank}.pid").write_text(str(os.getpid()))
    try:
        train(job_dir, rank, local_rank)
    except Exception as err:  # the launcher names the rank; this says what went wrong
        (job_dir / f"rank{rank}.error").write_text(
            f"{type(err).__name__}: {err}".splitlines()[0][:500] + "\n" + traceback.format_exc())
        raise
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
