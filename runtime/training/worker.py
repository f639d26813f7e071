"""Where retrains run: a warm worker process that forks one child per retrain.

Importing torch and avalanche costs tens of seconds on a small machine; paying that for
every retrain would dominate drift-to-promotion time. The daemon therefore keeps one
worker process (``python -m runtime.training.worker``) that imports them once and does nothing
else: it never runs torch code itself, so forking it is safe. For each job it forks a
child that runs :func:`runtime.training.retrain_job.main` in its own session, with stdout/stderr to
the job's log, and reports ``started PID`` and ``exit PID CODE`` on its stdout.

A crash, an exception or a timeout in the child becomes a failed :class:`Outcome` with
a reason; the daemon and the worker carry on. If the worker itself dies, the job fails
and the next one starts a fresh worker.

Nothing outlives the daemon: the worker watches its parent from before its imports and
exits (killing a running child) within :data:`PARENT_POLL_SECONDS` of the daemon's death,
and each child is killed by the kernel when the worker dies (``PR_SET_PDEATHSIG``). The
worker says ``ready`` once imported; one that is still importing is killed outright when
the daemon stops, instead of being waited for.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from runtime.store.atomic import write_json_atomic

KILL_GRACE_SECONDS = 2.0
"""How long a child has to end after SIGTERM, and an idle worker after its stdin closes."""
PARENT_POLL_SECONDS = 0.1
"""How often the worker checks that its daemon is alive."""
PR_SET_PDEATHSIG = 1
WORKER_START_SECONDS = 180.0  # a cold worker's imports, on top of a job's own timeout


@dataclass(frozen=True)
class Outcome:
    ok: bool
    result: dict[str, Any]
    reason: str
    seconds: float


class RetrainRunner:
    """Runs one retrain at a time through the warm worker and watches it."""

    def __init__(self, work_dir: Path, timeout_seconds: float) -> None:
        self.work_dir = work_dir
        self.timeout = timeout_seconds
        self.trigger_id: str | None = None
        self.started = 0.0
        self._worker: subprocess.Popen[bytes] | None = None
        self._ready = False  # the worker said it has imported torch and the rest
        self._buf = b""
        self._child: int | None = None
        self._child_started = 0.0
        self._exit: int | None = None
        self._result_path: Path | None = None
        self._checkpoint: Path | None = None

    @property
    def running(self) -> bool:
        return self.trigger_id is not None

    # -- the worker --------------------------------------------------------------------
    def warm(self) -> None:
        """Start the worker if it is not running (it imports in the background)."""
        if self._worker is not None and self._worker.poll() is None:
            return
        self._drop_worker()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        log = (self.work_dir / "worker.log").open("ab")
        self._worker = subprocess.Popen(
            [sys.executable, "-m", "runtime.training.worker", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,  # a Ctrl-C on the daemon's terminal is the daemon's to handle
        )
        log.close()
        self._buf = b""
        self._ready = False

    def close(self) -> None:
        """Stop a running job and the worker (daemon shutdown)."""
        if self.running:
            self.cancel()
        self._drop_worker()

    def kill(self) -> None:
        """Kill the running child and the worker at once (a stop past its deadline)."""
        if self._child is not None:
            with contextlib.suppress(OSError):
                os.killpg(self._child, signal.SIGKILL)
        if self._worker is not None:
            with contextlib.suppress(OSError):
                self._worker.kill()

    def _drop_worker(self) -> None:
        self._read()
        w, ready = self._worker, self._ready
        self._worker = None
        if w is None:
            return
        with contextlib.suppress(OSError):
            assert w.stdin is not None
            w.stdin.close()  # end of jobs: the worker leaves its loop
        if not ready:  # still importing: nothing of its own to finish
            w.kill()
        try:
            w.wait(timeout=KILL_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()
        if w.stdout is not None:
            w.stdout.close()

    def _read(self) -> None:
        w = self._worker
        if w is None or w.stdout is None:
            return
        fd = w.stdout.fileno()
        while select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            parts = line.decode().split()
            if parts[:1] == ["ready"]:
                self._ready = True
            elif parts[:1] == ["started"]:
                self._child = int(parts[1])
                self._child_started = time.monotonic()
            elif parts[:1] == ["exit"] and self._child == int(parts[1]):
                self._exit = int(parts[2])

    # -- jobs ----------------------------------------------------------------------------
    def start(self, trigger_id: str, spec: dict[str, Any]) -> None:
        assert not self.running, "one retrain at a time"
        self.warm()
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in trigger_id)
        spec_path = self.work_dir / f"{safe}.spec.json"
        self._result_path = self.work_dir / f"{safe}.result.json"
        self._result_path.unlink(missing_ok=True)
        # the training loop's epoch checkpoints: kept when the job is cancelled (daemon
        # shutdown, lost leadership) so that the re-run resumes; removed once it is done
        self._checkpoint = self.work_dir / f"{safe}.checkpoint"
        spec = {**spec, "checkpoint_dir": str(self._checkpoint)}
        write_json_atomic(spec_path, spec)
        job = f"{spec_path}\t{self._result_path}\t{self.work_dir / f'{safe}.log'}\n"
        self.trigger_id = trigger_id
        self.started = time.monotonic()
        self._child = self._exit = None
        assert self._worker is not None and self._worker.stdin is not None
        try:
            self._worker.stdin.write(job.encode())
            self._worker.stdin.flush()
        except OSError:
            pass  # a dead worker shows up in poll()

    def poll(self) -> Outcome | None:
        """``None`` while running; the outcome once the child is done (or timed out)."""
        if not self.running:
            return None
        elapsed = time.monotonic() - self.started
        self._read()
        if self._exit is None:
            assert self._worker is not None
            code = self._worker.poll()
            if code is not None:
                self._drop_worker()
                return self._finish(
                    Outcome(
                        False, {}, f"the retrain worker process died (exit code {code})", elapsed
                    )
                )
            # the job's clock starts with its child; a cold worker gets time to import
            if self._child is not None:
                if time.monotonic() - self._child_started <= self.timeout:
                    return None
            elif elapsed <= self.timeout + WORKER_START_SECONDS:
                return None
            self._kill_child()
            return self._finish(Outcome(False, {}, f"timed out after {self.timeout:g} s", elapsed))
        result: dict[str, Any] = {}
        if self._result_path is not None and self._result_path.exists():
            result = json.loads(self._result_path.read_text())
        code = self._exit
        if code == 0 and result.get("ok"):
            return self._finish(Outcome(True, result, "", elapsed))
        if result.get("error"):
            reason = str(result["error"])
        elif code < 0:
            reason = f"child process killed by signal {signal.Signals(-code).name}"
        else:
            reason = f"child process exited with code {code}"
        return self._finish(Outcome(False, result, reason, elapsed))

    def cancel(self) -> float:
        """Stop the running child; returns how long it ran."""
        elapsed = time.monotonic() - self.started
        if self.running:
            self._kill_child()
            self._finish(Outcome(False, {}, "cancelled", elapsed), keep_checkpoint=True)
        return elapsed

    def _kill_child(self) -> None:
        deadline = time.monotonic() + KILL_GRACE_SECONDS
        while self._child is None and time.monotonic() < deadline:
            if self._worker is None or self._worker.poll() is not None:
                return
            self._read()  # the worker may not have said "started" yet
            if not self._ready:  # still importing: the job dies with it (and a child it
                self._drop_worker()  # forked meanwhile, by its parent-death signal)
                return
            time.sleep(0.02)
        if self._child is None:
            return
        for sig, wait in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self._child, sig)
            except ProcessLookupError:  # not yet its own group leader: signal it alone
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._child, sig)
            end = time.monotonic() + wait
            while self._exit is None and time.monotonic() < end:
                if self._worker is None or self._worker.poll() is not None:
                    return
                self._read()
                time.sleep(0.02)
            if self._exit is not None:
                return

    def _finish(self, outcome: Outcome, keep_checkpoint: bool = False) -> Outcome:
        if not keep_checkpoint and self._checkpoint is not None:
            shutil.rmtree(self._checkpoint, ignore_errors=True)
        self._checkpoint = None
        self.trigger_id = None
        self._child = self._exit = None
        return outcome


def _lines(fd: int) -> Iterator[str | None]:
    """Lines from ``fd``; ``None`` when nothing arrived within 0.5 s; ends at EOF."""
    buf = b""
    while True:
        if b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield line.decode()
            continue
        if not select.select([fd], [], [], 0.5)[0]:
            yield None
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            return
        buf += chunk


def _die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux; elsewhere a
    no-op), and exit now if the parent is already gone."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _watch_parent(parent: int) -> None:
    """Exit once the daemon ``parent`` is gone (this process is reparented), killing the
    running child's process group first; a thread started before the slow imports."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        child = _current_child
        if child is not None:
            with contextlib.suppress(OSError):
                os.killpg(child, signal.SIGKILL)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


_current_child: int | None = None
"""The running child's pid (it leads its own process group), for the parent watch."""


def _fork_job(spec: str, result: str, log: str) -> int:
    from runtime.training import retrain_job as retrain

    worker = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 1  # the child: one retrain, then _exit (never back into the worker's loop)
    try:
        _die_with_parent(worker)
        os.setsid()
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        code = retrain.main([spec, result])
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _serve(fd: int, out: IO[str]) -> None:
    """Run jobs read from ``fd`` one at a time. If the daemon goes away (its end of the
    pipe closes), the running child is killed: no retrain outlives its daemon, so a
    restarted daemon re-runs the trigger exactly once instead of racing an orphan."""
    global _current_child
    lines = _lines(fd)
    for line in lines:
        if line is None:
            continue
        spec, result, log = line.split("\t")
        pid = _current_child = _fork_job(spec, result, log)
        out.write(f"started {pid}\n")
        out.flush()
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if next(lines, "EOF") == "EOF":  # the daemon is gone
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return
        _current_child = None
        out.write(f"exit {pid} {os.waitstatus_to_exitcode(status)}\n")
        out.flush()


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon decides when we stop
    _watch_parent(int(sys.argv[1]) if len(sys.argv) > 1 else os.getppid())
    import torch  # noqa: F401  - the point of this process: import once, fork many

    import runtime.training.retrain_job  # noqa: F401
    import strategies.avalanche_adapter  # noqa: F401

    sys.stdout.write("ready\n")
    sys.stdout.flush()
    _serve(sys.stdin.fileno(), sys.stdout)
    # the daemon closed our stdin (it stopped, or died): leave now. A normal interpreter
    # exit tears torch down first, which took 3-4 s on an idle 2-core VM and longer under
    # load, past the 5 s within which nothing may outlive a killed daemon (issue 17)
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
