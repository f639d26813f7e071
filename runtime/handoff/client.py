"""The serving side, in one module a serving process imports (or copies): it needs only
the standard library, plus what loads the chosen format (onnxruntime and numpy for
``onnx``; torch for ``torchscript``; torch and safetensors for ``safetensors``).

:class:`ChampionWatcher` follows the champion that driftloop exports, from the export
directory (``DIR/current``) or from the daemon's API, and hot-reloads it when it
changes: the model file's sha256 is checked against the manifest first, and a load that
fails keeps the model being served (the reason is logged and kept in ``last_error``).

:class:`RowLogger` sends the rows the model saw (and labels, when known) to
``POST /v1/ingest`` without ever blocking the request path: rows wait in a bounded
queue, a thread sends them in batches, retries with backoff while the daemon is
unreachable (one ``Idempotency-Key`` per batch, so a retry stores nothing twice), and
counts what it had to drop.

Example::

    from runtime.handoff.client import ChampionWatcher, RowLogger

    champion = ChampionWatcher("/srv/driftloop/exports", format="onnx").start()
    rows = RowLogger("http://127.0.0.1:8765", token=os.environ["DRIFTLOOP_TOKEN"])

    def handle(features):                       # your request handler
        version, [label] = champion.predict([features])
        rows.log(features)                      # never blocks; rows.dropped counts losses
        return {"label": label, "model": version}
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Champion", "ChampionWatcher", "LoadError", "RowLogger"]

log = logging.getLogger("driftloop.client")

FILES = {"safetensors": "model.safetensors", "torchscript": "model.torchscript.pt",
         "onnx": "model.onnx"}


class LoadError(Exception):
    """A champion that could not be loaded (the message says why, in one line)."""


@dataclass(frozen=True)
class Champion:
    """A loaded champion: its version, manifest and a function from rows to logits."""

    version: str
    manifest: dict[str, Any]
    format: str
    run: Callable[[Any], Any] = field(repr=False)

    def logits(self, rows: Any) -> Any:
        """Logits ``[n, n_classes]`` (numpy float32) of rows in the manifest's feature order."""
        import numpy as np

        x = np.ascontiguousarray(np.asarray(rows, dtype=np.float32))
        if x.ndim == 1:
            x = x.reshape(1, -1)
        return self.run(x)

    def predict(self, rows: Any) -> list[Any]:
        """The class value (from the manifest's ``classes``) of each row."""
        classes = self.manifest["output"]["classes"]
        return [classes[int(i)] for i in self.logits(rows).argmax(axis=1)]


class ChampionWatcher:
    """Serve the newest champion, reloading it when driftloop hands over another.

    Parameters
    ----------
    source
        The export directory (holding ``current``) or the daemon's base URL
        (``http://host:port``, which serves ``/v1/champion`` and the artifacts).
    format
        ``onnx``, ``torchscript`` or ``safetensors`` (the last needs ``build``).
    build
        For ``safetensors``: a function returning the module to load the weights into.
    token
        Bearer token for the artifact endpoint, when the daemon sets one.
    poll_seconds
        How often the background thread (:meth:`start`) looks for a new champion.
    on_change
        Called with the new :class:`Champion` after each successful reload.
    """

    def __init__(
        self,
        source: str | os.PathLike[str],
        *,
        format: str = "onnx",
        build: Callable[[], Any] | None = None,
        token: str | None = None,
        poll_seconds: float = 1.0,
        timeout: float = 30.0,
        on_change: Callable[[Champion], None] | None = None,
    ) -> None:
        if format not in FILES:
            raise ValueError(f"format must be one of {', '.join(FILES)}, got {format!r}")
        if format == "safetensors" and build is None:
            raise ValueError("format 'safetensors' needs build=: the module to load into")
        text = str(source)
        self.url = text.rstrip("/") if text.startswith(("http://", "https://")) else None
        self.dir = None if self.url else Path(text)
        self.format = format
        self.build = build
        self.token = token
        self.poll_seconds = poll_seconds
        self.timeout = timeout
        self.on_change = on_change
        self.last_error: str | None = None
        self._champion: Champion | None = None
        self._seen: object = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def champion(self) -> Champion | None:
        """The champion being served (None before the first successful load)."""
        return self._champion

    def predict(self, rows: Any) -> tuple[str, list[Any]]:
        """``(version, class values)`` from the champion being served; LoadError if none."""
        champion = self._champion
        if champion is None:
            raise LoadError(f"no champion loaded yet ({self.last_error or 'not polled'})")
        return champion.version, champion.predict(rows)

    def start(self) -> ChampionWatcher:
        """Load the champion now (logged if that fails) and keep polling in a thread."""
        self.check()
        self._thread = threading.Thread(target=self._poll, name="champion-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout)

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.check()

    def check(self) -> bool:
        """Look once; reload if the champion changed. True when a new one is served."""
        try:
            marker = self._marker()
            if marker is None or marker == self._seen:
                return False
            champion = self._load(marker)
        except LoadError as err:
            if str(err) != self.last_error:
                log.error("champion not reloaded, serving %s: %s",
                          self._champion.version if self._champion else "nothing", err)
            self.last_error = str(err)
            return False
        except Exception as err:  # a reader must survive anything on disk or the wire
            self.last_error = f"{type(err).__name__}: {err}"
            log.exception("champion not reloaded")
            return False
        self._champion, self._seen, self.last_error = champion, marker, None
        log.info("serving champion %s (%s)", champion.version, self.format)
        if self.on_change is not None:
            self.on_change(champion)
        return True

    # -- where the champion is -------------------------------------------------------------
    def _marker(self) -> object:
        if self.dir is not None:
            try:
                target = os.readlink(self.dir / "current")
            except FileNotFoundError:
                return None
            except OSError as err:
                raise LoadError(f"{self.dir / 'current'}: {err.strerror}") from None
            folder = self.dir / target
            try:
                stamp = (folder / "manifest.json").stat().st_mtime_ns
            except FileNotFoundError:
                raise LoadError(f"{folder} has no manifest.json") from None
            return (str(folder), stamp)
        status = json.loads(self._get("/v1/champion"))
        version = status.get("champion")
        return None if version is None else str(version)

    def _load(self, marker: object) -> Champion:
        if self.dir is not None:
            assert isinstance(marker, tuple)
            folder = Path(marker[0])
            manifest = _json(folder / "manifest.json")
            path = folder / _file(manifest, self.format)
            _check(path.read_bytes() if path.is_file() else None, manifest, path)
            return Champion(str(manifest["version"]), manifest, self.format,
                            self._runner(path))
        version = str(marker)
        base = f"/v1/models/{urllib.parse.quote(version)}/artifact?format={self.format}"
        manifest = json.loads(self._get(base + "&file=manifest.json"))
        data = self._get(base)
        name = _file(manifest, self.format)
        _check(data, manifest, Path(name))
        folder = Path(tempfile.mkdtemp(prefix=f"driftloop-{version}-"))
        (folder / name).write_bytes(data)
        return Champion(version, manifest, self.format, self._runner(folder / name))

    def _get(self, path: str) -> bytes:
        assert self.url is not None
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        request = urllib.request.Request(self.url + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as err:
            raise LoadError(f"GET {path}: HTTP {err.code}") from None
        except (urllib.error.URLError, OSError) as err:
            raise LoadError(f"GET {self.url}{path}: {getattr(err, 'reason', err)}") from None

    # -- loading a format ---------------------------------------------------------------------
    def _runner(self, path: Path) -> Callable[[Any], Any]:
        try:
            if self.format == "onnx":
                return _onnx(path)
            if self.format == "torchscript":
                return _torchscript(path)
            assert self.build is not None
            return _safetensors(path, self.build)
        except LoadError:
            raise
        except Exception as err:
            raise LoadError(f"{path.name} does not load as {self.format}: "
                            f"{type(err).__name__}: {str(err)[:200]}") from None


def _json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise LoadError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(value, dict):
        raise LoadError(f"{path}: not a manifest")
    return value


def _file(manifest: dict[str, Any], fmt: str) -> str:
    try:
        return str(manifest["formats"][fmt]["file"])
    except (KeyError, TypeError):
        formats = ", ".join(manifest.get("formats", {})) or "none"
        raise LoadError(f"version {manifest.get('version')} was not exported as {fmt} "
                        f"(exported: {formats})") from None


def _check(data: bytes | None, manifest: dict[str, Any], path: Path) -> None:
    if data is None:
        raise LoadError(f"{path} is missing")
    want = manifest.get("files", {}).get(path.name, {}).get("sha256")
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise LoadError(f"{path.name}: sha256 {got[:16]}… does not match the manifest's "
                        f"{str(want)[:16]}… (damaged or half written)")


def _onnx(path: Path) -> Callable[[Any], Any]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def _torchscript(path: Path) -> Callable[[Any], Any]:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch: TorchScript is deprecated
        module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    module.eval()

    def run(x: Any) -> Any:
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    return run


def _safetensors(path: Path, build: Callable[[], Any]) -> Callable[[Any], Any]:
    import torch
    from safetensors.torch import load_file

    module = build()
    module.load_state_dict(load_file(str(path)))
    module.eval()

    def run(x: Any) -> Any:
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    return run


# -- rows back to the daemon -------------------------------------------------------------------
class RowLogger:
    """Send rows (and labels) to the daemon's ``POST /v1/ingest`` in the background.

    Parameters
    ----------
    url
        The daemon's base URL.
    token
        The bearer token of the API's mutating endpoints.
    batch_rows, flush_seconds
        A batch goes out when it holds ``batch_rows`` rows or ``flush_seconds`` after its
        first row.
    max_queue_rows
        Rows waiting at most; beyond, :meth:`log` drops the row and counts it.
    retries, backoff_seconds, max_backoff_seconds
        A batch that meets a connection error or a 5xx is sent again after
        ``backoff_seconds``, doubling up to ``max_backoff_seconds``, ``retries`` times;
        then it is dropped and counted.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        batch_rows: int = 500,
        flush_seconds: float = 1.0,
        max_queue_rows: int = 10_000,
        retries: int = 5,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 30.0,
        timeout: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/") + "/v1/ingest"
        self.token = token
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.timeout = timeout
        self.sent = 0
        """Rows the daemon acknowledged."""
        self._dropped = 0
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[list[float], int | None, str | None]] = queue.Queue(
            max_queue_rows)
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._run, name="row-logger", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        """Rows dropped: queue full, or a batch whose retries ran out or that was refused."""
        return self._dropped

    def log(
        self, row: Sequence[float], label: int | None = None, row_id: str | None = None
    ) -> bool:
        """Queue one row (values in the schema's feature order); never blocks. False when
        the queue was full and the row was dropped."""
        try:
            self._queue.put_nowait(([float(v) for v in row], label, row_id))
        except queue.Full:
            self._drop(1)
            return False
        self._idle.clear()
        return True

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued row was sent or dropped; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.empty() and self._idle.is_set():
                return True
            time.sleep(0.01)
        return False

    def close(self, timeout: float = 30.0) -> None:
        """Send what is queued (``timeout`` at most), then stop the thread."""
        self.flush(timeout)
        self._stop.set()
        self._thread.join(timeout)

    def _drop(self, n: int) -> None:
        with self._lock:
            self._dropped += n

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._collect()
            if batch:
                self._send(batch)
            if self._queue.empty():
                self._idle.set()

    def _collect(self) -> list[tuple[list[float], int | None, str | None]]:
        try:
            first = self._queue.get(timeout=0.1)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.flush_seconds
        while len(batch) < self.batch_rows:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=left))
            except queue.Empty:
                break
        return batch

    def _send(self, batch: list[tuple[list[float], int | None, str | None]]) -> None:
        key = uuid.uuid4().hex
        body: dict[str, Any] = {"rows": [r for r, _, _ in batch]}
        if any(lab is not None for _, lab, _ in batch):
            body["labels"] = [lab for _, lab, _ in batch]
        if any(rid is not None for _, _, rid in batch):
            body["row_ids"] = [rid or f"{key}:{i}" for i, (_, _, rid) in enumerate(batch)]
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        for attempt in range(self.retries + 1):
            if attempt:
                delay = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (attempt - 1))
                if self._stop.wait(delay):
                    break
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    response.read()
                self.sent += len(batch)
                return
            except urllib.error.HTTPError as err:
                if err.code < 500 and err.code != 429:
                    log.error("ingest refused %d rows: HTTP %d %s", len(batch), err.code,
                              err.read()[:200].decode(errors="replace"))
                    break
                reason = f"HTTP {err.code}"
            except (urllib.error.URLError, OSError) as err:
                reason = str(getattr(err, "reason", err))
            log.warning("ingest attempt %d of %d rows failed: %s", attempt + 1, len(batch), reason)
        self._drop(len(batch))
