"""The appeal: a candidate that failed only golden checks is judged on the live rows
that follow, and promoted only where the present agrees with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from runtime.promotion.appeal import APPEAL
from runtime.promotion.approval import awaiting_approval
from runtime.review.text import event_line
from runtime.store import events as ev
from tests.runtime.promotion.test_promotion import N_FEATURES, World, rows, weights


def concept_world(tmp_path: Path, persist: bool = False, **gate: object) -> World:
    """v1 knows the old concept (class 1 iff x0 < 0) and its golden set holds it; v2 was
    retrained on the new one (x0 > 0): better on the new data, it forgets v1's golden set."""
    w = World(tmp_path, persist=persist, shadow_rows=200, **gate)
    x, y = rows(400, seed=3)
    save_linear(w, "v1", -1.0, None, x, 1 - y)
    save_linear(w, "v2", 1.0, "v1", x, 1 - y)
    w.registry.promote("v1", {"reason": "bootstrap"})
    return w


def save_linear(w: World, version: str, sign: float, parent: str | None,
                golden_x: np.ndarray, golden_y: np.ndarray) -> None:
    """A linear model (:func:`weights`) whose own golden set is ``golden_x``/``golden_y``."""
    w.registry.save(
        version,
        tensors={
            "model": weights(sign),
            "reference": {"x": torch.zeros(1, N_FEATURES, dtype=torch.float64)},
            "golden": {"x": torch.as_tensor(golden_x), "y": torch.as_tensor(golden_y)},
        },
        meta={"golden_index": [version], "golden_provenance": {"rows": len(golden_y)}},
        parent=parent,
    )


def live_rows(n: int, concept: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = rows(n, seed=11)
    return x, (y if concept > 0 else 1 - y)


def test_a_candidate_that_only_forgot_is_appealed_not_refused(tmp_path: Path) -> None:
    w = concept_world(tmp_path)
    assert w.keeper.judge("t1", w.result("v1", "v2"), w.unit("v1")) is None
    first = w.events.last(ev.GATE_FAILED)
    assert first is not None and first.raw["next"] == APPEAL
    assert w.registry.get("v2").status == "candidate"
    assert w.keeper.protected() == frozenset({"v2"})
    assert "judge it on live traffic" in event_line(first)


def test_an_appeal_is_won_where_the_live_rows_follow_the_new_concept(tmp_path: Path) -> None:
    w = concept_world(tmp_path)
    w.keeper.judge("t1", w.result("v1", "v2"), w.unit("v1"))
    x, y = live_rows(250, concept=+1)
    assert w.live(np.arange(250), x, y, w.unit("v1")) == "v2"
    final = w.events.last(ev.GATE_PASSED)
    assert final is not None and final.raw["stage"] == "shadow"
    live = next(c for c in final.raw["checks"] if c["name"] == "live")
    assert live["passed"] and live["n"] >= 200
    assert not any(c["name"].startswith("golden") for c in final.raw["checks"])
    assert w.registry.champion() == "v2"


def test_an_appeal_is_lost_where_the_old_knowledge_still_holds(tmp_path: Path) -> None:
    w = concept_world(tmp_path)
    w.keeper.judge("t1", w.result("v1", "v2"), w.unit("v1"))
    x, y = live_rows(250, concept=-1)
    assert w.live(np.arange(250), x, y, w.unit("v1")) is None
    final = w.events.last(ev.GATE_FAILED)
    assert final is not None and final.raw["stage"] == "shadow"
    assert "still holds" in " ".join(final.raw["reasons"])
    assert w.registry.get("v2").status == "refused" and w.registry.champion() == "v1"


def test_appeal_refuse_keeps_the_immediate_refusal(tmp_path: Path) -> None:
    w = concept_world(tmp_path, appeal="refuse")
    assert w.keeper.judge("t1", w.result("v1", "v2"), w.unit("v1")) is None
    last = w.events.last(ev.GATE_FAILED)
    assert last is not None and last.raw["next"] == "refuse"
    assert w.registry.get("v2").status == "refused" and w.keeper.shadow is None


def test_a_candidate_worse_on_the_new_data_is_not_appealed(tmp_path: Path) -> None:
    w = concept_world(tmp_path)
    w.registry.promote("v2", {"reason": "test"})
    save_linear(w, "v3", 0.0, "v2", np.zeros((1, N_FEATURES)), np.zeros(1, dtype=np.int64))
    w.keeper.judge("t2", w.result("v2", "v3"), w.unit("v2"))  # half right vs all right
    last = w.events.last(ev.GATE_FAILED)
    assert last is not None and last.raw["next"] == "refuse"


def test_a_restart_mid_appeal_resumes_it_as_an_appeal(tmp_path: Path) -> None:
    w = concept_world(tmp_path, persist=True)
    w.keeper.judge("t1", w.result("v1", "v2"), w.unit("v1"))
    x, y = live_rows(250, concept=+1)
    w.live(np.arange(80), x[:80], y[:80], w.unit("v1"))
    keeper = w.restart("v1")
    assert keeper.shadow is not None and keeper.shadow.rows == 80
    assert w.registry.get("v2").status == "candidate"
    assert w.live(np.arange(80, 250), x[80:], y[80:], w.unit("v1")) == "v2"


def test_a_newer_candidate_replaces_the_appeal_in_progress(tmp_path: Path) -> None:
    w = concept_world(tmp_path)
    w.keeper.judge("t1", w.result("v1", "v2"), w.unit("v1"))
    x, y = rows(400, seed=3)
    save_linear(w, "v3", 1.0, "v1", x, 1 - y)
    w.keeper.judge("t2", w.result("v1", "v3"), w.unit("v1"))
    assert w.registry.get("v2").status == "refused"
    assert w.keeper.shadow is not None and w.keeper.shadow.challenger_version == "v3"


def test_in_manual_mode_a_won_appeal_waits_for_a_person(tmp_path: Path) -> None:
    w = concept_world(tmp_path, mode="manual")
    w.keeper.judge("t1", w.result("v1", "v2"), w.unit("v1"))
    x, y = live_rows(250, concept=+1)
    assert w.live(np.arange(250), x, y, w.unit("v1")) is None
    assert awaiting_approval(w.registry, w.events) == ["v2"]
    assert w.registry.champion() == "v1"
