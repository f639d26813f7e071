"""Every script in bench/ runs: its quick mode as a smoke test, so a change that breaks a
bench fails the suite and the figures in bench/README.md stay reproducible.

Each script runs in a subprocess from this tree with ``--quick`` and a temporary
``--json`` (plus the arguments in :data:`NARROW`, which shrink a quick mode that is
still long to one seed or one benchmark); the test checks the exit status and that the
JSON was written. Scripts not in :data:`FAST` are ``slow`` (``make test-slow``, CI): a
new bench is smoke-tested there until it is listed here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

TESTED_ELSEWHERE = {"faults.py": "tests/runtime/test_faults_campaign.py"}
"""Scripts whose quick mode has a test of its own, which checks its findings too."""

SCRIPTS = sorted(
    p.name
    for p in (ROOT / "bench").glob("*.py")
    if '__name__ == "__main__"' in p.read_text() and p.name not in TESTED_ELSEWHERE
)
"""The bench scripts (the modules they share, such as ``streams.py``, are not run)."""

FAST = {"throughput.py", "handoff.py"}
"""Scripts whose smoke run takes well under 30 s on a 2-core machine: in ``make test``."""

NARROW: dict[str, list[str]] = {
    "brokers.py": ["--rows", "4000"],
    "continual.py": [
        "--seeds", "1", "--only", "digits_class_incremental", "--strategies", "finetune,replay",
    ],
    "detectors.py": ["--seeds", "2", "--long", "5000"],
    "distributed.py": ["--repeats", "1", "--rounds", "1"],
    "estimated.py": ["--streams", "agrawal-covariate", "employment-age", "covertype-elevation"],
    "gate.py": ["--runs", "2"],
    "ingest_http.py": ["--seconds", "1", "--synchronous", "normal", "--no-baseline"],
    "real_streams.py": ["--streams", "electricity", "--configs", "defaults", "--anchors", "fast",
                        "--no-twice"],
    "throughput.py": ["--repeats", "2"],
}
"""Extra arguments that bound a quick mode still too long for a smoke test."""

REQUIRES: dict[str, list[str]] = {"real_streams.py": ["skmultiflow"],
                                  "estimated.py": ["skmultiflow", "nannyml"]}
"""Bench-only packages a script needs (``bench/install_streams.sh``); skipped without them."""

TIMEOUT_S = 600


def _param(name: str) -> object:
    marks = [] if name in FAST else [pytest.mark.slow]
    return pytest.param(name, marks=marks, id=name.removesuffix(".py"))


@pytest.mark.parametrize("script", [_param(s) for s in SCRIPTS])
def test_bench_quick_mode_runs(script: str, tmp_path: Path) -> None:
    missing = [m for m in REQUIRES.get(script, []) if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{script} needs {', '.join(missing)}: run bench/install_streams.sh")
    out = tmp_path / "result.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "bench" / script), "--quick", "--json", str(out),
           *NARROW.get(script, [])]
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=TIMEOUT_S, check=False)
    assert run.returncode == 0, f"{' '.join(cmd)}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert isinstance(json.loads(out.read_text()), dict)


def test_every_bench_has_a_quick_mode() -> None:
    for script in [*SCRIPTS, *TESTED_ELSEWHERE]:
        assert "--quick" in (ROOT / "bench" / script).read_text(), script
    for script, test in TESTED_ELSEWHERE.items():
        assert f"bench/{script}" in (ROOT / test).read_text(), (script, test)


def test_results_hold_the_files_the_readme_cites() -> None:
    """bench/results keeps what bench/README.md cites, and everything it cites exists
    (superseded runs live in git history)."""
    readme = (ROOT / "bench" / "README.md").read_text(encoding="utf-8")
    files = {p.name for p in (ROOT / "bench" / "results").iterdir() if p.is_file()}
    assert sorted(f for f in files if f not in readme) == []
    cited = set(re.findall(r"bench/results/([\w.-]+\.\w+)", readme))
    assert sorted(cited - files) == []
