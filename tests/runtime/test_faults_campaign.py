"""The fault campaign's quick mode (bench/faults.py --quick): one kill -9 per phase with
real processes, each followed by the checks and a restart (slow: a few minutes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_campaign_loses_nothing_and_restarts(tmp_path: Path) -> None:
    out = tmp_path / "faults.json"
    done = subprocess.run(
        [sys.executable, "bench/faults.py", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert out.exists(), done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    trials = result["trials"]
    assert [t["phase"] for t in trials] == [
        "ingest",
        "retrain",
        "gate",
        "promotion",
        "export",
        "hook",
    ], done.stdout[-2000:]
    for kind in ("lost_rows", "duplicate_rows", "corrupt", "champion", "restart"):
        assert not [t for t in trials if t["failures"].get(kind)], (kind, trials)
    assert result["summary"]["all"]["trials"] == 6
    others = [
        (t["phase"], k)
        for t in trials
        for k in ("double_promotion", "leftover_processes")
        if t["failures"].get(k)
    ]
    if others:  # the daemon's own findings (issue 17, items 1 and 6), fixed elsewhere
        pytest.xfail(f"double promotions or leftover processes after kill -9: {others}")
