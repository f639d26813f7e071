"""``driftloop replay`` on a small generated stream whose concept flips half way."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from runtime.cli.main import main
from runtime.config import DriftloopConfig, parse_config
from runtime.replay.compare import Options, compare, frontier, periodic, run_schedule, with_settings
from runtime.replay.engine import Schedule
from runtime.replay.stream import LoggedStream

ROWS, FLIP, BOOT = 3000, 1500, 500


def flipping_stream(n: int = ROWS, seed: int = 3) -> pd.DataFrame:
    """Two features; the label is x0 > 0 before row FLIP and x0 < 0 after it."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    y = (x[:, 0] > 0).astype(int)
    y[FLIP:] = 1 - y[FLIP:]
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "label": y})


def config_data(tmp: Path) -> dict[str, object]:
    return {
        "state_dir": str(tmp / "state"),
        "schema": {"features": ["a", "b"], "classes": [0, 1]},
        "source": {"kind": "directory", "path": str(tmp / "in")},
        "model": {"kind": "mlp", "hidden": [8]},
        "bootstrap": {"rows": BOOT, "epochs": 20},
        "detectors": [{"kind": "adwin", "signal": "error"}],
        "policy": {"warmup_rows": 100, "min_samples": 400, "cooldown_rows": 300,
                   "triggers": {"labelled_rows": None},  # drift alone
                   "cadence": {"enabled": False}},  # the gaps as written
        "retrain": {"strategy": {"kind": "finetune", "lr": 0.03}, "budget": {"epochs": 30},
                    "buffer": {"kind": "reservoir", "capacity": 500},
                    "min_rows": 1},  # the rows since the onset alone
        "gate": {"min_gain": 0.0, "min_accuracy": 0.6, "max_forgetting": 1.0},
        "watch": {"rows": 0},
    }


def cli_inputs(tmp: Path, rows: int = 2000) -> tuple[Path, Path]:
    """The flipping stream as a CSV and :func:`config_data` as a YAML file, for the CLI."""
    import yaml

    data = tmp / "stream.csv"
    flipping_stream(rows).to_csv(data, index=False)
    conf = tmp / "c.yaml"
    conf.write_text(yaml.safe_dump(config_data(tmp)))
    return conf, data


@pytest.fixture
def cfg(tmp_path: Path) -> DriftloopConfig:
    return parse_config(config_data(tmp_path))


@pytest.fixture
def stream(cfg: DriftloopConfig) -> LoggedStream:
    return LoggedStream(flipping_stream(), cfg.schema)


def test_the_loop_adapts_and_repeats_exactly(cfg: DriftloopConfig, stream: LoggedStream) -> None:
    opts = Options(batch_rows=100)
    first = run_schedule(cfg, stream, Schedule("drift"), opts)
    again = run_schedule(cfg, stream, Schedule("drift"), opts)
    never = run_schedule(cfg, stream, Schedule("never", gate=False), opts)
    assert first.start == BOOT
    assert np.isnan(first.correct[:BOOT]).all() and not np.isnan(first.correct[BOOT:]).any()
    assert first.count("promoted") >= 1
    assert first.accuracy > never.accuracy + 0.2  # v1 is wrong on half the stream after FLIP
    assert first.accuracy == again.accuracy
    assert np.array_equal(first.correct, again.correct, equal_nan=True)
    assert [(r.requested_at, r.outcome) for r in first.retrains] == [
        (r.requested_at, r.outcome) for r in again.retrains]
    assert not never.retrains and never.versions == ["v1"]
    assert all(r.failed_checks for r in first.retrains if r.outcome == "refused")


def test_periodic_baselines_retrain_evenly_on_the_rows_since_the_last(
    cfg: DriftloopConfig, stream: LoggedStream
) -> None:
    sched = periodic(3, BOOT, ROWS, "p")
    assert sched.every == (ROWS - BOOT) // 4 == 625
    r = run_schedule(cfg, stream, sched, Options(batch_rows=100))
    # the k-th retrain after the step that reaches k * 625 rows after the bootstrap
    assert [x.requested_at for x in r.retrains] == [1199, 1799, 2399]
    assert [x.first_row for x in r.retrains] == [BOOT + 1, 1201, 1801]  # seq = position + 1
    assert [x.last_row for x in r.retrains] == [1200, 1800, 2400]
    coarse = run_schedule(cfg, stream, periodic(4, BOOT, ROWS, "p"), Options(batch_rows=400))
    assert len(coarse.retrains) == 4  # steps coarser than the period do not lose retrains
    assert r.count("promoted") == 3  # no gate


def test_compare_runs_periodic_at_the_same_and_twice_the_retrains(
    cfg: DriftloopConfig, stream: LoggedStream
) -> None:
    runs = compare(cfg, stream, Options(batch_rows=100))
    loop, never, *rest = runs
    k = len(loop.retrains)
    assert k >= 1 and not never.retrains
    assert [len(r.retrains) for r in rest] == [k, 2 * k]
    assert rest[0].name.startswith("periodic, same retrains")


def test_labels_arrive_late_and_retrains_train_only_on_known_labels(
    cfg: DriftloopConfig, stream: LoggedStream
) -> None:
    delay = 300
    r = run_schedule(cfg, stream, Schedule("drift"), Options(batch_rows=100, label_delay=delay))
    p = run_schedule(cfg, stream, periodic(2, BOOT, ROWS, "p"),
                     Options(batch_rows=100, label_delay=delay))
    assert r.retrains and p.retrains
    for x in [*r.retrains, *p.retrains]:
        # at position requested_at the labels of positions <= requested_at - delay are known
        assert x.last_row <= x.requested_at - delay + 1
    assert [x.last_row for x in p.retrains] == [x.requested_at - delay + 1 for x in p.retrains]
    assert not np.isnan(r.correct[BOOT:]).any()  # every row was served and scored
    # the alarm can only come once labels of the flipped rows are known
    assert min(x.requested_at for x in r.retrains) >= FLIP + delay


def test_a_retrain_takes_the_configured_rows(cfg: DriftloopConfig, stream: LoggedStream) -> None:
    r = run_schedule(cfg, stream, periodic(1, BOOT, ROWS, "p"),
                     Options(batch_rows=100, retrain_rows=400))
    (x,) = r.retrains
    assert x.ready_at == x.requested_at + 1 + 400
    v1 = r.versions.index("v1")
    assert (r.served[x.requested_at + 1 : x.ready_at] == v1).all()
    assert (r.served[x.ready_at:] != v1).all()


def test_grid_settings_are_validated_and_the_frontier_marked(cfg: DriftloopConfig) -> None:
    changed = with_settings(cfg, {"policy.cooldown_rows": 900, "detectors.0.delta": 0.01})
    assert changed.policy.cooldown_rows == 900 and changed.policy.min_samples == 400
    with pytest.raises(ValueError, match="cooldown_rows"):
        with_settings(cfg, {"policy.cooldown_rows": -1})
    with pytest.raises(ValueError, match="not an index"):
        with_settings(cfg, {"detectors.3.delta": 0.01})


def test_frontier_keeps_runs_no_other_beats() -> None:
    class R:
        def __init__(self, acc: float, k: int) -> None:
            self.score, self.retrains = acc, [None] * k

    runs = [R(0.80, 2), R(0.79, 3), R(0.85, 4), R(0.80, 1)]
    assert frontier(runs) == [False, False, True, True]  # type: ignore[arg-type]


def test_cli_prints_the_table_and_writes_json(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    conf, data = cli_inputs(tmp_path)
    out = tmp_path / "r.json"
    code = main(["replay", "-c", str(conf), "--data", str(data), "-q", "--json", str(out),
                 "--plot", str(tmp_path / "r.png")])
    assert code == 0
    text = capsys.readouterr().out
    assert "| driftloop |" in text and "| never retrain |" in text
    got = json.loads(out.read_text())
    assert got["runs"][0]["name"] == "driftloop" and (tmp_path / "r.png").stat().st_size > 0
    assert not (tmp_path / "state").exists()  # the config's state is never touched


def test_cli_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    conf = tmp_path / "c.yaml"
    conf.write_text(yaml.safe_dump(config_data(tmp_path)))
    data = tmp_path / "s.csv"
    flipping_stream(800).drop(columns=["b"]).to_csv(data, index=False)
    assert main(["replay", "-c", str(conf), "--data", str(data)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "driftloop replay: the data has no column(s) 'b'"
    flipping_stream(800).to_csv(data, index=False)
    assert main(["replay", "-c", str(conf), "--data", str(data), "--grid", "policy.x"]) == 2
    assert "expected KEY=V1,V2" in capsys.readouterr().err


def test_the_served_table_holds_the_runs_prequential_accuracy(
    cfg: DriftloopConfig, stream: LoggedStream, tmp_path: Path
) -> None:
    """The replay records what was served as the daemon does: the daemon's realized
    accuracy over the run's state is the replay's prequential accuracy."""
    from runtime.replay.engine import LoopReplay
    from runtime.store.db import Database
    from runtime.store.served import realized, realized_by_version

    result = LoopReplay(cfg, stream, Schedule("drift"), batch_rows=100).run(tmp_path / "run")
    db = Database.for_state_dir(tmp_path / "run", None)
    got = realized(db, window=ROWS)
    assert (got.rows, got.first_row, got.last_row) == (ROWS - BOOT, BOOT + 1, ROWS)
    assert got.value == pytest.approx(result.accuracy, abs=1e-12)
    per = realized_by_version(db, window=ROWS)
    assert list(per) == result.versions and len(per) >= 2
    for i, version in enumerate(result.versions):
        mine = result.correct[result.served == i]
        assert per[version].value == pytest.approx(float(np.nanmean(mine)), abs=1e-12)
    db.dispose()


def test_a_retrain_learns_at_least_min_rows(tmp_path: Path) -> None:
    data = config_data(tmp_path)
    data["retrain"]["min_rows"] = 1000  # type: ignore[index]
    cfg = parse_config(data)
    r = run_schedule(cfg, LoggedStream(flipping_stream(), cfg.schema), Schedule("drift"),
                     Options(batch_rows=100))
    assert r.retrains
    for x in r.retrains:
        assert x.rows >= 1000 and x.last_row - x.first_row + 1 == x.rows
        assert x.first_row < x.onset  # it reached back before the drift's onset
