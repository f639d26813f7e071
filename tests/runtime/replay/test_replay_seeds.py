"""``driftloop replay --seeds``: the comparison once per retrain seed, and its verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.cli.main import main
from runtime.config import DriftloopConfig, parse_config
from runtime.replay.compare import Options
from runtime.replay.seeds import Gain, compare_seeds, gains, gains_table, parse_seeds, seeded
from runtime.replay.stream import LoggedStream
from tests.runtime.replay.test_replay import cli_inputs, config_data, flipping_stream


def test_seeds_are_parsed_or_refused_in_one_line() -> None:
    assert parse_seeds("0,1,2") == (0, 1, 2)
    for bad, why in (("0,x", "expected integers"), ("1,1", "repeated"), ("-1", "non-negative")):
        with pytest.raises(ValueError, match=why):
            parse_seeds(bad)


def test_the_verdict_needs_the_mean_outside_the_seeds_spread() -> None:
    spread = Gain("periodic", (1.0, 2.0, 3.0))
    assert spread.mean == 2.0 and spread.se == pytest.approx(1 / 3**0.5)
    assert spread.half_width == pytest.approx(4.303 / 3**0.5, rel=1e-3)  # t(0.975, 2)
    assert spread.verdict == "within noise"  # 2.0 - 2.48 < 0
    assert Gain("periodic", (1.0, 1.2, 1.1)).verdict == "ahead"
    assert Gain("p", (-1.0, 1.0, 0.5)).verdict == "within noise"
    assert Gain("p", (-0.5, -0.6, -0.4, -0.55)).verdict == "behind"
    assert Gain("p", (0.3, 0.4)).verdict == "too few seeds"
    assert Gain("p", (0.3,)).se is None


def test_each_seed_pairs_the_loop_with_its_own_baselines(tmp_path: Path) -> None:
    cfg: DriftloopConfig = parse_config(config_data(tmp_path))
    stream = LoggedStream(flipping_stream(2000), cfg.schema)
    per_seed = compare_seeds(cfg, stream, Options(batch_rows=100), (0, 1, 2))
    assert list(per_seed) == [0, 1, 2]
    assert seeded(cfg, 2).retrain.seed == 2 and seeded(cfg, 0) is cfg
    loops = [runs[0] for runs in per_seed.values()]
    assert [r.name for r in loops] == ["driftloop, seed 0", "driftloop, seed 1",
                                       "driftloop, seed 2"]
    by_name = {g.baseline: g for g in gains(per_seed)}
    assert {"never retrain", "periodic, same retrains"} <= set(by_name)
    never = by_name["never retrain"]
    assert never.per_seed == tuple(100 * (runs[0].score - runs[1].score)
                                   for runs in per_seed.values())
    assert never.verdict == "ahead"  # v1 is wrong on every row after the flip
    text = gains_table(per_seed)
    assert "| never retrain |" in text and "| seed 0 | seed 1 | seed 2 |" in text


def test_cli_seeds_print_the_gains_and_write_them(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    conf, data = cli_inputs(tmp_path)
    out = tmp_path / "r.json"
    assert main(["replay", "-c", str(conf), "--data", str(data), "-q", "--seeds", "0,1,2",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "seed 2:" in text and "| loop's gain over (points) |" in text
    got = json.loads(out.read_text())
    assert set(got["seeds"]) == {"0", "1", "2"}
    never = next(g for g in got["gains"] if g["baseline"] == "never retrain")
    assert never["verdict"] == "ahead" and len(never["per_seed"]) == 3
    assert main(["replay", "-c", str(conf), "--data", str(data), "--seeds", "0,0"]) == 2
    assert capsys.readouterr().err.strip() == "driftloop replay: --seeds '0,0': a seed is repeated"


def test_cli_grid_over_seeds_marks_the_frontier_on_means(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf, data = cli_inputs(tmp_path)
    out = tmp_path / "g.json"
    assert main(["replay", "-c", str(conf), "--data", str(data), "-q", "--seeds", "0,1",
                 "--grid", "policy.cooldown_rows=300,900", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "mean ± s.e." in text and "| policy.cooldown_rows=300 |" in text and "*" in text
    got = json.loads(out.read_text())
    assert [len(g["runs"]) for g in got["grid"]] == [2, 2]
    assert got["grid"][0]["seeds"] == [0, 1]
