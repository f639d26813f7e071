from __future__ import annotations

from detectors.base import DriftSignal
from runtime.config import PolicyConfig
from runtime.monitoring.policy import Policy


def _sig(signal: str = "error", onset: int | None = 90) -> DriftSignal:
    return DriftSignal(detector="adwin", signal=signal, status="drift", index=100, onset=onset)


def test_warmup_suppresses_alarms_near_the_baseline() -> None:
    p = Policy(PolicyConfig(warmup_rows=500))
    p.rebaseline(1000)
    assert p.decide(_sig(), 1200).action == "suppressed"
    assert p.decide(_sig(), 1600).action == "retrain"


def test_feature_drift_alone_alerts_and_refreshes_reference() -> None:
    p = Policy(PolicyConfig(warmup_rows=0))
    d = p.decide(_sig("features"), 100)
    assert d.action == "alert" and d.refresh_reference
    p2 = Policy(PolicyConfig(warmup_rows=0, retrain_on_feature_drift=True))
    assert p2.decide(_sig("features"), 100).action == "retrain"


def test_model_signal_drift_outside_retrain_on_is_not_called_feature_drift() -> None:
    d = Policy(PolicyConfig(warmup_rows=0)).decide(_sig("confidence"), 100)
    assert d.action == "alert" and not d.refresh_reference
    assert d.reason == "confidence drift: alert (not in policy.retrain_on)"


def test_an_error_that_fell_alerts_instead_of_retraining() -> None:
    def sig(before: float, after: float, **details: object) -> DriftSignal:
        return DriftSignal(detector="adwin", signal="error", status="drift", index=100,
                           onset=90, details={"mean_before": before, "mean_after": after,
                                              **details})

    p = Policy(PolicyConfig(warmup_rows=0))
    d = p.decide(sig(0.30, 0.10), 100)
    assert d.action == "alert" and "fell" in d.reason
    assert p.decide(sig(0.10, 0.30), 100).action == "retrain"
    cusum = DriftSignal(detector="cusum", signal="error", status="drift", index=100, onset=90,
                        details={"branch": "mean_down"})
    assert p.decide(cusum, 100).action == "alert"
    keen = Policy(PolicyConfig(warmup_rows=0, retrain_when_error_falls=True))
    assert keen.decide(sig(0.30, 0.10), 100).action == "retrain"


def test_one_episode_at_a_time_then_cooldown() -> None:
    p = Policy(PolicyConfig(warmup_rows=0, cooldown_rows=1000, min_samples=50))
    assert p.decide(_sig(), 100).action == "retrain"
    ep = p.start_episode(7, _sig(), 100)
    assert ep.onset == 90 and ep.trigger_event == 7
    assert p.decide(_sig(), 150).reason == "a retrain is already pending"
    assert not p.ready(49) and p.ready(50)
    p.episode_requested()
    assert p.decide(_sig(), 160).action == "suppressed"  # busy
    p.retrain_done()
    assert p.decide(_sig(), 600).reason == "cooldown: within 1000 rows of the last retrain trigger"
    p.cadence_factor = 0.5  # policy.cadence after a retrain shown to pay
    assert p.decide(_sig(), 400).reason == ("cooldown: within 500 rows of the last retrain "
                                             "trigger (0.5× the configured 1,000: policy.cadence)")
    assert p.decide(_sig(), 1200).action == "retrain"


def test_state_round_trip() -> None:
    p = Policy(PolicyConfig(warmup_rows=0))
    p.rebaseline(10)
    p.start_episode(3, _sig(), 100)
    q = Policy(PolicyConfig(warmup_rows=0))
    q.load_state(p.state())
    assert q.state() == p.state() and q.episode == p.episode


def _alarm(detector: str, signal: str = "error", onset: int | None = 90) -> DriftSignal:
    return DriftSignal(detector=detector, signal=signal, status="drift", index=100, onset=onset)


def test_hysteresis_suppresses_a_detector_until_it_has_been_quiet() -> None:
    p = Policy(PolicyConfig(warmup_rows=0, cooldown_rows=0, hysteresis_rows=500))
    assert p.decide(_alarm("a", "features"), 1000).action == "alert"
    d = p.decide(_alarm("a", "features"), 1300)
    assert d.action == "suppressed" and "hysteresis" in d.reason
    assert p.decide(_alarm("a", "features"), 1700).action == "suppressed"  # 400 rows: still on
    assert p.decide(_alarm("b", "features"), 1750).action == "alert"  # per detector
    assert p.decide(_alarm("a", "features"), 2300).action == "alert"  # re-armed


def test_k_of_n_voting() -> None:
    p = Policy(PolicyConfig(warmup_rows=0, vote_k=2, vote_window_rows=300, cooldown_rows=0))
    d = p.decide(_alarm("a", "features", onset=950), 1000)
    assert d.action == "suppressed" and d.reason.startswith("vote: 1 of 2")
    assert p.decide(_alarm("a", "features"), 1100).action == "suppressed"  # same detector
    assert p.decide(_alarm("b", "error", onset=1150), 1500).action == "suppressed"  # a expired
    d = p.decide(_alarm("c", "features", onset=1300), 1600)
    assert d.action == "retrain"  # b watched the error: the vote is error drift
    ep = p.start_episode(1, _alarm("c", "features", onset=1300), 1600)
    assert ep.onset == 1150  # the earliest voter's onset
    assert p.votes == []


def test_vote_among_lets_other_detectors_act_alone() -> None:
    cfg = PolicyConfig(warmup_rows=0, vote_k=2, vote_among=["x", "y"])
    p = Policy(cfg)
    assert p.decide(_alarm("x"), 1000).action == "suppressed"
    assert p.decide(_alarm("z"), 1000).action == "retrain"


def test_state_round_trip_with_votes_and_hysteresis() -> None:
    p = Policy(PolicyConfig(warmup_rows=0, vote_k=3, hysteresis_rows=100))
    p.decide(_alarm("a"), 500)
    p.decide(_alarm("b", onset=None), 520)
    q = Policy(PolicyConfig(warmup_rows=0, vote_k=3, hysteresis_rows=100))
    q.load_state(p.state())
    assert q.state() == p.state() and q.votes == p.votes
    assert q.decide(_alarm("c"), 550).action == "retrain"
