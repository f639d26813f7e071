"""Where compiled kernels are cached (detectors.jit)."""

from __future__ import annotations

from pathlib import Path

import pytest

from detectors.jit import cache_dir, writable


def test_cache_goes_where_it_can_be_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    blocked = tmp_path / "a-file"
    blocked.write_text("")  # nothing can be created under a file
    fallback = tmp_path / "fallback"
    assert writable(tmp_path / "src") and not writable(blocked / "x")
    assert cache_dir(tmp_path / "src", fallback) is None  # numba's own: next to the code
    assert cache_dir(blocked, fallback) == fallback  # code owned by someone else
    assert cache_dir(blocked, blocked / "x") is False  # nowhere: compile in memory
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(fallback))
    assert cache_dir(blocked, blocked / "x") is None  # the user's choice
