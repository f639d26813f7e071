"""The cadence factor: gaps between retrains follow what the retrains bought."""

from __future__ import annotations

from pathlib import Path

from runtime.monitoring.cadence import Cadence, error_cut
from runtime.monitoring.settings import CadenceConfig
from runtime.store import events as ev
from runtime.store.db import Database
from runtime.store.events import EventLog
from tests.runtime.monitoring.test_triggers import world

ON = CadenceConfig(max_factor=4.0)  # stretches too


def gate(champion: float, candidate: float, stage: str = "holdout",
         metric: str = "accuracy", gain_lower: float | None = None) -> ev.Gate:
    numbers = {} if gain_lower is None else {"gain_lower": gain_lower}
    check = ev.GateCheck(name="new_data", metric=metric, champion=champion,
                         candidate=candidate, passed=True, numbers=numbers)
    return ev.Gate(candidate="v2", champion="v1", stage=stage, passed=True, checks=(check,))


def log(tmp_path: Path) -> EventLog:
    db = Database(f"sqlite:///{tmp_path / 'events.db'}")
    db.create_all()
    return EventLog(db)


def test_error_cut_is_the_share_of_the_champions_error_removed() -> None:
    assert abs(error_cut(gate(0.70, 0.79)) - 0.30) < 1e-9
    assert abs(error_cut(gate(2.0, 1.5, metric="mae")) - 0.25) < 1e-9
    assert error_cut(gate(0.80, 0.76)) < 0
    assert error_cut(ev.Gate(candidate="v2", reasons=("void",))) is None


def test_big_gains_halve_the_gaps_and_small_ones_double_them(tmp_path: Path) -> None:
    events = log(tmp_path)
    cadence = Cadence(ON, events)
    seen = []
    for champ, cand in [(0.70, 0.80), (0.70, 0.80), (0.80, 0.805), (0.80, 0.80), (0.8, 0.79),
                        (0.8, 0.79), (0.80, 0.81)]:
        events.append(ev.GATE_PASSED, gate(champ, cand))
        seen.append(cadence.refresh())
    # cut 1/3 twice (floor 0.5), then 2.5%, 0%, -5% twice (cap 4), then 5% (kept)
    assert seen == [0.5, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_shadow_decisions_and_a_disabled_cadence_change_nothing(tmp_path: Path) -> None:
    events = log(tmp_path)
    events.append(ev.GATE_PASSED, gate(0.80, 0.80, stage="shadow"))
    assert Cadence(ON, events).refresh() == 1.0
    events.append(ev.GATE_PASSED, gate(0.80, 0.80))
    assert Cadence(CadenceConfig(enabled=False), events).refresh() == 1.0
    assert Cadence(ON, events).refresh() == 2.0  # a new daemon reads the log


def test_by_default_the_gaps_only_ever_shorten(tmp_path: Path) -> None:
    events = log(tmp_path)
    cadence = Cadence(CadenceConfig(), events)
    seen = []
    for champ, cand in [(0.80, 0.80), (0.70, 0.80), (0.70, 0.80), (0.80, 0.80), (0.80, 0.80)]:
        events.append(ev.GATE_PASSED, gate(champ, cand))
        seen.append(cadence.refresh())
    # no gain: kept at the configured gaps; cut 1/3 twice: half (the floor); then back
    assert seen == [1.0, 0.5, 0.5, 1.0, 1.0]


def test_a_retrain_that_bought_nothing_stretches_the_backstop(tmp_path: Path) -> None:
    w = world(tmp_path, {"labelled_rows": {"every": 100}}, cadence={"max_factor": 4.0})
    alarms, policy = w.daemon()
    w.events.append(ev.GATE_PASSED, gate(0.80, 0.80))
    w.rows(150)
    alarms.maybe_request_retrain("v1")
    assert w.requested() == [] and policy.cadence_factor == 2.0
    w.rows(50)
    alarms.maybe_request_retrain("v1")
    (p,) = w.requested()
    assert p.reason == ("200 new labelled rows arrived (every 200, 2× the configured 100: "
                        "policy.cadence)")


def test_a_cut_the_gate_did_not_show_is_not_a_reason_to_hurry(tmp_path: Path) -> None:
    events = log(tmp_path)
    cadence = Cadence(CadenceConfig(), events)
    # 0.970 -> 0.978 removes 27% of the error, but its 95% lower bound is below zero
    events.append(ev.GATE_PASSED, gate(0.970, 0.978, gain_lower=-0.003))
    assert cadence.refresh() == 1.0
    events.append(ev.GATE_PASSED, gate(0.73, 0.95, gain_lower=0.19))
    assert cadence.refresh() == 0.5


def test_a_retrain_shown_to_pay_brings_the_backstop_forward(tmp_path: Path) -> None:
    w = world(tmp_path, {"labelled_rows": {"every": 100}})  # cadence as by default
    alarms, policy = w.daemon()
    w.events.append(ev.GATE_PASSED, gate(0.70, 0.85, gain_lower=0.08))
    w.rows(50)
    alarms.maybe_request_retrain("v1")
    (p,) = w.requested()
    assert policy.cadence_factor == 0.5
    assert p.reason == ("50 new labelled rows arrived (every 50, 0.5× the configured 100: "
                        "policy.cadence)")
