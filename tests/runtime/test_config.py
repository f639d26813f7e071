from __future__ import annotations

import copy
from pathlib import Path

import pytest

from runtime.cli.validate import build_everything
from runtime.config import ConfigError, load_config, parse_config
from tests.conftest import SMALL

CONFIGS = sorted(Path(__file__).resolve().parents[2].joinpath("configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads_validates_and_builds(path: Path) -> None:
    cfg = load_config(path)
    lines = list(build_everything(cfg))
    assert any(line.startswith("model:") for line in lines)


def test_validate_names_a_text_column_once() -> None:
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "text_column.yaml")
    lines = list(build_everything(cfg))
    assert "columns: text text (32 token ids)" in lines


def _with(**changes: object) -> dict[str, object]:
    data = copy.deepcopy(SMALL)
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("__")
        for p in parents:
            node = node[p]
        node[last] = value
    return data


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (_with(policy__warmup=5), "unknown key 'policy.warmup'"),
        (_with(gate__min_gain="lots"), "'gate.min_gain'"),
        (_with(retrain__holdout_fraction=1.5), "'retrain.holdout_fraction'"),
        (_with(detectors=[{"kind": "nosuch"}]), "detectors[0]"),
        (_with(detectors=[{"kind": "adwin", "signal": "weather"}]), "unknown signal 'weather'"),
        (_with(detectors=[{"kind": "adwin"}, {"kind": "adwin"}]), "repeated: adwin"),
        (_with(schema__classes=[1]), "'schema.classes'"),
        # a warning level at or past the drift level used to load (the warning never comes first)
        (_with(detectors=[{"kind": "ddm", "warning_threshold": 3.0}]),
         "warning_threshold 3 must be below drift_threshold 3"),
        (_with(detectors=[{"kind": "hddm_a", "warning_confidence": 0.0005}]),
         "warning_confidence 0.0005 must be above drift_confidence 0.001"),
        (_with(detectors=[{"kind": "hddm_w", "warning_confidence": 0.001}]),
         "warning_confidence 0.001 must be above drift_confidence 0.001"),
        (_with(detectors=[{"kind": "eddm", "alpha": 0.75}]),
         "alpha 0.75 (the warning level) must be above beta 0.75"),
        # alpha was silently ignored: calibration 'threshold' compares the raw statistic
        (_with(detectors=[{"kind": "psi", "calibration": "threshold", "alpha": 0.01}]),
         "'detectors[0].psi': alpha 0.01 is not used with calibration 'threshold'"),
        # so were the other p-value settings, when written
        (_with(detectors=[{"kind": "wasserstein", "calibration": "threshold",
                           "correction": "holm", "bootstrap_draws": 50}]),
         "'detectors[0].wasserstein': correction, bootstrap_draws are not used with "
         "calibration 'threshold'"),
        # policy names that match nothing used to load and silently never retrain / vote
        (_with(policy__retrain_on=["erorr"]), "policy.retrain_on names unknown signal(s) 'erorr'"),
        (_with(policy__vote_k=2, policy__vote_among=["adwin", "adwn"]),
         "policy.vote_among names unknown detector(s) 'adwn'"),
        (_with(policy__vote_k=3), "policy.vote_k 3 exceeds the"),
        # gate rules on classes or slices that do not exist used to load (and pass or refuse
        # every candidate at runtime)
        (_with(gate__rules=[{"by": "slice", "max_worsening": 0.02}]),
         "gate.rules[0] is by: slice but gate.slices defines none"),
        (_with(gate__rules=[{"by": "class", "only": ["7"], "max_worsening": 0.02}]),
         "gate.rules[0].only names unknown class(es) 7"),
        (_with(gate__slices={"old": {"height": [None, 2.0]}}),
         "gate.slices.old names unknown feature(s) height"),
        (_with(retrain__budget={"epochs": None, "seconds": None}),
         "'retrain.budget': the budget sets no limit"),
        (_with(stages=[{"name": "a", "budget": {"epochs": None, "seconds": None}}]),
         "'stages[0].budget': the budget sets no limit"),
        (_with(retrain__budget={"epochs": None, "seconds": 60},
               retrain__strategy={"kind": "replay", "adapt": {"schedule": "cosine"}}),
         "'retrain': strategy.adapt.schedule 'cosine' decays over the budget's epochs or steps"),
        (_with(stages=[{"name": "a", "budget": {"epochs": None, "seconds": 9},
                        "strategy": {"kind": "finetune", "adapt": {"schedule": "linear"}}}]),
         "'stages[0]': strategy.adapt.schedule 'linear' decays"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(data: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, origin="c.yaml")
    msg = str(info.value)
    assert expected in msg, msg
    assert "\n" not in msg
    assert msg.startswith("c.yaml: ")


def test_alpha_loads_with_a_calibration_that_uses_it() -> None:
    for kind in ("psi", "wasserstein", "jensenshannon"):
        boot = parse_config(_with(detectors=[{"kind": kind, "alpha": 0.01}]), "c.yaml")
        assert boot.detectors[0].level == 0.01
        plain = parse_config(_with(detectors=[{"kind": kind, "calibration": "threshold"}]))
        assert plain.detectors[0].alpha is None
        with pytest.raises(ConfigError, match=r"alpha 0\.05 is not used"):
            parse_config(_with(detectors=[{"kind": kind, "calibration": "threshold",
                                           "alpha": 0.05}]))


def test_p_value_settings_load_only_with_a_calibration_that_uses_them() -> None:
    written = {"false_alarms_per_rows": 50_000, "correction": "holm", "bootstrap_draws": 50,
               "bootstrap_reference_cap": 500}
    for kind in ("psi", "wasserstein", "jensenshannon"):
        boot = parse_config(_with(detectors=[{"kind": kind, **written}]), "c.yaml")
        assert boot.detectors[0].correction == "holm"
        for key, value in written.items():
            with pytest.raises(ConfigError, match=rf"{key} is not used with calibration"):
                parse_config(_with(detectors=[{"kind": kind, "calibration": "threshold",
                                               key: value}]))


def test_a_schedule_with_a_length_or_a_constant_one_loads_on_a_seconds_budget() -> None:
    for strategy, budget in (
        ({"kind": "replay", "adapt": {"schedule": "cosine"}}, {"epochs": None, "steps": 200}),
        ({"kind": "replay", "adapt": {"warmup_steps": 20}}, {"epochs": None, "seconds": 60}),
    ):
        cfg = parse_config(_with(retrain__strategy=strategy, retrain__budget=budget), "c.yaml")
        assert cfg.retrain.budget.epochs is None


def test_missing_key_is_named() -> None:
    data = copy.deepcopy(SMALL)
    del data["source"]
    with pytest.raises(ConfigError, match="missing key 'source'"):
        parse_config(data)


def test_no_detectors_key_watches_the_error_with_cusum_and_adwin() -> None:
    data = copy.deepcopy(SMALL)
    del data["detectors"]
    cfg = parse_config(data)
    assert [(d.kind, d.signal) for d in cfg.detectors] == [("cusum", "error"), ("adwin", "error")]
    data["detectors"] = []
    with pytest.raises(ConfigError, match="detectors"):
        parse_config(data)


def test_yaml_errors_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("state_dir: x\nschema: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    import yaml

    data = copy.deepcopy(SMALL)
    data["state_dir"] = "st"
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_config(path).state_dir == (tmp_path / "sub" / "st").resolve()


def test_config_hash_is_stable_and_sensitive() -> None:
    a = parse_config(copy.deepcopy(SMALL))
    b = parse_config(copy.deepcopy(SMALL))
    c = parse_config(_with(gate__min_gain=0.05))
    assert a.config_hash() == b.config_hash() != c.config_hash()


def test_validate_builds_the_stages_and_tries_each_adaptation_on_the_model() -> None:
    data = copy.deepcopy(SMALL)
    data["stages"] = [{"name": "pretrain", "strategy": {"kind": "finetune",
                                                        "adapt": {"freeze": ["net.0.*"]}}}]
    lines = list(build_everything(parse_config(data)))
    assert "stage 1/1 pretrain: finetune on the bootstrap rows" in lines
    data["retrain"]["strategy"]["adapt"] = {"freeze": ["nett.*"]}
    with pytest.raises(ConfigError) as info:
        list(build_everything(parse_config(data)))
    assert str(info.value) == (
        "'retrain.strategy.adapt.freeze': 'nett.*' matches no parameter of the model "
        "(net.0.weight, net.0.bias, net.2.weight, ...)")
    data["retrain"]["strategy"]["adapt"] = {"freeze": ["*"]}
    with pytest.raises(ConfigError, match=r"^'retrain.strategy.adapt': nothing to train"):
        list(build_everything(parse_config(data)))
    data["retrain"]["strategy"]["adapt"] = {}
    data["stages"][0]["data"] = "/nowhere/pretrain.csv"
    with pytest.raises(ConfigError, match=r"^'stages\[0\].data' \(stage 'pretrain'\): no such"):
        list(build_everything(parse_config(data)))
