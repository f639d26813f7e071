from __future__ import annotations

from detectors.base import DriftSignal
from runtime.config import PolicyConfig
from runtime.policy import Policy


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
    assert "cooldown" in p.decide(_sig(), 600).reason
    assert p.decide(_sig(), 1200).action == "retrain"


def test_state_round_trip() -> None:
    p = Policy(PolicyConfig(warmup_rows=0))
    p.rebaseline(10)
    p.start_episode(3, _sig(), 100)
    q = Policy(PolicyConfig(warmup_rows=0))
    q.load_state(p.state())
    assert q.state() == p.state() and q.episode == p.episode
