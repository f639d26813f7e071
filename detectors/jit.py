"""numba's ``njit`` with an on-disk cache wherever driftloop runs.

numba caches compiled code next to the source (``detectors/__pycache__``) or in the
user's cache directory, and refuses to decorate a ``cache=True`` function (at import) when
it can write to neither, as for a service user in a container whose code is owned by root.
:func:`cache_dir` picks where the cache goes: ``NUMBA_CACHE_DIR`` when set, else numba's
own choice when the source directory is writable, else a per-user folder under the
temporary directory; with none writable, kernels compile in memory each process.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numba

F = TypeVar("F", bound=Callable[..., Any])


def writable(path: Path) -> bool:
    """Whether files can be created in ``path`` (created if missing)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            return True
    except OSError:
        return False


def cache_dir(source_dir: Path, fallback: Path) -> Path | bool | None:
    """``None`` to leave numba's choice (``NUMBA_CACHE_DIR`` or next to the sources), a
    folder to cache in, or ``False`` for no disk cache."""
    if os.environ.get("NUMBA_CACHE_DIR") or writable(source_dir / "__pycache__"):
        return None
    return fallback if writable(fallback) else False


_uid = getattr(os, "getuid", lambda: 0)()
_where = cache_dir(Path(__file__).parent,
                   Path(tempfile.gettempdir()) / f"driftloop-numba-{_uid}")
if isinstance(_where, Path):
    numba.config.CACHE_DIR = str(_where)  # type: ignore[attr-defined]  # read at decoration


def njit(fn: F) -> F:
    """``numba.njit(cache=...)``: compiled on first call, cached on disk when possible."""
    out: Any = numba.njit(cache=_where is not False)(fn)
    return out  # type: ignore[no-any-return]
