"""From a finished retrain to a champion: integrity, evidence, modes, approval, the watch.

Models are linear (``hidden: []``) with hand-set weights, so each test knows which model is
right where; the gate's evidence is written the way the retrain child writes it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from runtime.config import DriftloopConfig
from runtime.promotion.approval import ReviewError, approve, awaiting_approval, reject, review
from runtime.promotion.evidence import (
    NEW_DATA,
    Evidence,
    EvidenceError,
    evidence_path,
    read_evidence,
    score,
    write_evidence,
)
from runtime.promotion.gatekeeper import LIVE_KEY, Gatekeeper
from runtime.promotion.watch import PairedLive, mcnemar_greater, save_live_state, worse_than_before
from runtime.review.text import event_line
from runtime.store import events as ev
from runtime.store.db import Database
from runtime.store.events import EventLog
from runtime.store.rows import labelled_rows
from runtime.store.unit import Unit, load_unit
from runtime.store.versions import Registry
from tests.conftest import small_config

N_FEATURES = 9


def weights(sign: float) -> dict[str, torch.Tensor]:
    """A linear model: class 1 iff ``sign * x0 > 0`` (sign 0: always class 0)."""
    w = torch.zeros(2, N_FEATURES)
    w[1, 0], w[0, 0] = 5.0 * sign, -5.0 * sign
    b = torch.tensor([0.1, 0.0]) if sign == 0 else torch.zeros(2)
    return {
        "mean": torch.zeros(N_FEATURES),
        "std": torch.ones(N_FEATURES),
        "net.0.weight": w,
        "net.0.bias": b,
    }


def rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, N_FEATURES))
    return x, (x[:, 0] > 0).astype(np.int64)


class World:
    def __init__(self, tmp_path: Path, persist: bool = False, **gate: Any) -> None:
        self.cfg: DriftloopConfig = small_config(
            tmp_path,
            model={"kind": "mlp", "hidden": []},
            gate={"min_gain": 0.02, "min_accuracy": 0.9, "max_forgetting": 0.03,
                  "obsolete_golden": "keep", "forgetting": "bounded", **gate},
            watch={"rows": 300, "alpha": 0.01},
        )
        self.cfg.state_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database.for_state_dir(self.cfg.state_dir, None)
        self.db.create_all()
        self.events = EventLog(self.db)
        self.registry = Registry(self.db, self.cfg.state_dir / "models", self.events)
        self.lines: list[str] = []
        self.persist = persist
        self.keeper = self.gatekeeper()
        self.stored: dict[int, tuple[np.ndarray, int]] = {}

    def gatekeeper(self) -> Gatekeeper:
        """A gatekeeper as a (re)started daemon makes it: on the same database."""
        db = self.db if self.persist else None
        return Gatekeeper(self.cfg, self.registry, self.events, self.lines.append, db=db)

    def live(self, seqs: np.ndarray, x: np.ndarray, y: np.ndarray, champion: Unit) -> str | None:
        """Store labelled rows (the row store's part) and feed them to the gatekeeper."""
        for s, xi, yi in zip(seqs, x, y, strict=True):
            self.stored[int(s)] = (xi, int(yi))
        return self.keeper.observe(seqs, x, y, champion)

    def read_rows(self, seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows by number, as the daemon reads them back from its row store."""
        got = [int(s) for s in seqs if int(s) in self.stored]
        x = np.array([self.stored[s][0] for s in got]).reshape(len(got), N_FEATURES)
        y = np.array([self.stored[s][1] for s in got], dtype=np.int64)
        return np.array(got, dtype=np.int64), x, y

    def restart(self, champion: str) -> Gatekeeper:
        self.keeper = self.gatekeeper()
        self.keeper.resume(self.unit(champion), self.read_rows)
        self.keeper.recover([v.version for v in self.registry.list()])
        return self.keeper

    def save(self, version: str, sign: float, parent: str | None, golden: list[str]) -> None:
        x, y = rows(400, seed=len(version) + int(version[1:]))
        self.registry.save(
            version,
            tensors={
                "model": weights(sign),
                "reference": {"x": torch.zeros(1, N_FEATURES, dtype=torch.float64)},
                "golden": {"x": torch.as_tensor(x), "y": torch.as_tensor(y)},
            },
            meta={"golden_index": [*golden, version], "golden_provenance": {"rows": 400}},
            parent=parent,
        )

    def unit(self, version: str) -> Unit:
        return load_unit(self.registry, self.cfg, version)

    def result(self, champion: str, candidate: str) -> dict[str, Any]:
        """What the retrain child reports: evidence of both models on holdout and golden."""
        a, b = self.unit(champion).model, self.unit(candidate).model
        x, y = rows(400, seed=99)
        sets = {NEW_DATA: score(NEW_DATA, a, b, x, y, {})}
        for name in self.unit(champion).golden_index:
            g = self.registry.load(name).tensors["golden"]
            sets[name] = score(name, a, b, g["x"].numpy(), g["y"].numpy(), {})
        ev_ = Evidence("classification", tuple(self.cfg.schema.features), (0, 1), sets)
        path = evidence_path(self.cfg.state_dir, candidate)
        path.parent.mkdir(parents=True, exist_ok=True)
        return {
            "candidate": candidate,
            "evidence": {"path": str(path), "sha256": write_evidence(path, ev_)},
        }


@pytest.fixture
def world(tmp_path: Path) -> World:
    w = World(tmp_path)
    w.save("v1", 0.0, None, [])  # always class 0: about half right
    w.registry.promote("v1", {"reason": "bootstrap"})
    w.save("v2", 1.0, "v1", ["v1"])  # right everywhere
    return w


def manual_world(tmp_path: Path) -> World:
    """Manual gate mode: v1 champion; v2 (trigger t1) and v3 (t2) passed, await approval."""
    w = World(tmp_path, mode="manual")
    w.save("v1", 0.0, None, [])
    w.registry.promote("v1", {"reason": "bootstrap"})
    for version, trigger in (("v2", "t1"), ("v3", "t2")):
        w.save(version, 1.0, "v1", ["v1"])
        w.keeper.judge(trigger, w.result("v1", version), w.unit("v1"))
    return w


def kinds(w: World) -> list[str]:
    return [e.kind for e in w.events.list()]


# -- auto mode and fail-closed paths -------------------------------------------------------


def test_auto_mode_promotes_a_candidate_that_passes(world: World) -> None:
    promoted = world.keeper.judge("t1", world.result("v1", "v2"), world.unit("v1"))
    assert promoted == "v2" and world.registry.champion() == "v2"
    gate = world.events.last(ev.GATE_PASSED)
    assert gate is not None and gate.raw["next"] == "promote"
    assert {c["name"] for c in gate.raw["checks"]} == {"new_data", "golden:v1"}


def test_a_gate_failed_event_reads_well_to_someone_who_was_not_there(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.save("v1", 1.0, None, [])  # right everywhere
    w.registry.promote("v1", {"reason": "bootstrap"})
    w.save("v2", 0.0, "v1", ["v1"])  # forgot: always class 0
    assert w.keeper.judge("t1", w.result("v1", "v2"), w.unit("v1")) is None
    failed = w.events.last(ev.GATE_FAILED)
    assert failed is not None
    for c in failed.raw["checks"]:  # every check: its numbers and one sentence
        assert c["champion"] is not None and c["candidate"] is not None and c["n"] == 400
        assert {"loss", "loss_upper"} <= set(c["numbers"]) and c["threshold"]
        assert c["reason"].endswith(".") and c["reason"].count(". ") == 0
    assert 0 <= failed.raw["false_refusal_risk"] <= 1 and failed.raw["noise"]
    head, *checks = event_line(failed).splitlines()
    assert head.endswith("v2 vs v1: refuse (2 of 2 checks failed)")  # reasons not repeated
    assert len(checks) == 2 and all(line.strip().startswith("FAIL") for line in checks)
    golden = next(line for line in checks if "golden:v1" in line)
    assert "On golden set 'v1' (400 rows)" in golden and "more than the allowed 0.03" in golden


def test_champion_checksum_mismatch_fails_closed(world: World) -> None:
    champion = world.unit("v1")
    result = world.result("v1", "v2")
    path = world.registry.path("v1") / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert world.keeper.judge("t1", result, champion) is None  # recorded, not raised
    assert world.registry.champion() == "v1" and world.registry.get("v2").status == "refused"
    decision, evidence = review(world.registry, world.cfg.gate, result, "v1", ["v1"])
    assert not decision.passed and evidence is None
    assert decision.checks[0].name == "integrity:champion"
    assert "The champion v1 failed its integrity check" in decision.reasons[0]
    assert "sha256" in decision.reasons[0]


def test_a_corrupted_candidate_is_recorded_as_refused_not_a_crash(world: World) -> None:
    champion = world.unit("v1")
    result = world.result("v1", "v2")
    path = world.registry.path("v2") / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-10])  # truncated
    assert world.keeper.judge("t1", result, champion) is None
    failed = world.events.last(ev.GATE_FAILED)
    assert failed is not None and failed.model_version == "v2"
    assert "The candidate v2 failed its integrity check" in failed.raw["reasons"][0]
    assert "truncated" in failed.raw["reasons"][0]
    assert world.registry.get("v2").status == "refused"
    assert world.registry.champion() == "v1"


def test_altered_or_missing_evidence_fails_closed(world: World) -> None:
    result = world.result("v1", "v2")
    path = Path(result["evidence"]["path"])
    path.write_bytes(path.read_bytes() + b" ")
    decision, _ = review(world.registry, world.cfg.gate, result, "v1", ["v1"])
    assert not decision.passed and "was changed after the retrain wrote it" in decision.reasons[0]
    path.unlink()
    decision, _ = review(world.registry, world.cfg.gate, result, "v1", ["v1"])
    assert "is missing" in decision.reasons[0]
    decision, _ = review(world.registry, world.cfg.gate, {"candidate": "v2"}, "v1", ["v1"])
    assert decision.reasons == ("The retrain reported no evaluation evidence.",)


def test_evidence_round_trips_and_refuses_garbage(world: World, tmp_path: Path) -> None:
    result = world.result("v1", "v2")
    got = read_evidence(Path(result["evidence"]["path"]), result["evidence"]["sha256"])
    assert set(got.sets) == {NEW_DATA, "v1"} and got.classes == (0, 1)
    assert got.sets["v1"].champion.shape == (400, 2)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(EvidenceError, match="not readable"):
        read_evidence(junk, None)


# -- manual mode ---------------------------------------------------------------------------


def test_manual_mode_waits_for_approval(tmp_path: Path) -> None:
    w = World(tmp_path, mode="manual")
    w.save("v1", 0.0, None, [])
    w.registry.promote("v1", {"reason": "bootstrap"})
    w.save("v2", 1.0, "v1", ["v1"])
    assert w.keeper.judge("t1", w.result("v1", "v2"), w.unit("v1")) is None
    assert w.registry.champion() == "v1"
    assert awaiting_approval(w.registry, w.events) == ["v2"]
    event = approve(w.registry, w.events, "v2")
    assert event.kind == ev.MODEL_PROMOTED and w.registry.champion() == "v2"
    assert "approved" in event.raw["reason"]
    with pytest.raises(ReviewError, match="not awaiting approval"):
        approve(w.registry, w.events, "v2")


def test_manual_reject_and_stale_approval(tmp_path: Path) -> None:
    w = World(tmp_path, mode="manual")
    w.save("v1", 0.0, None, [])
    w.registry.promote("v1", {"reason": "bootstrap"})
    w.save("v2", 1.0, "v1", ["v1"])
    w.save("v3", 1.0, "v1", ["v1"])
    w.keeper.judge("t1", w.result("v1", "v2"), w.unit("v1"))
    w.keeper.judge("t2", w.result("v1", "v3"), w.unit("v1"))
    event = reject(w.registry, w.events, "v2", "labels from the broken feed")
    assert event.kind == ev.GATE_FAILED
    assert event.raw["reasons"] == ["Rejected by an operator: labels from the broken feed."]
    assert w.registry.get("v2").status == "refused"
    w.registry.set_status("v2", "candidate")  # pretend it were still pending
    approve(w.registry, w.events, "v3")
    with pytest.raises(ReviewError, match="not awaiting approval"):
        approve(w.registry, w.events, "v2")
    with pytest.raises(ReviewError, match="no model version"):
        reject(w.registry, w.events, "v9", "x")


# -- shadow mode ---------------------------------------------------------------------------


def test_shadow_mode_decides_after_live_rows(tmp_path: Path) -> None:
    w = World(tmp_path, mode="shadow", shadow_rows=200)
    w.save("v1", 0.0, None, [])
    w.registry.promote("v1", {"reason": "bootstrap"})
    w.save("v2", 1.0, "v1", ["v1"])
    champion = w.unit("v1")
    assert w.keeper.judge("t1", w.result("v1", "v2"), champion) is None
    assert w.keeper.protected() == frozenset({"v2"})
    x, y = rows(250, seed=5)
    y_pos = y.copy()
    y_pos[::5] = -1  # unlabelled rows are skipped
    assert w.keeper.observe(np.arange(100), x[:100], y_pos[:100], champion) is None
    assert w.keeper.observe(np.arange(100, 250), x[100:], y_pos[100:], champion) == "v2"
    final = w.events.last(ev.GATE_PASSED)
    assert final is not None and final.raw["stage"] == "shadow"
    new = next(c for c in final.raw["checks"] if c["name"] == "new_data")
    assert new["n"] == 200 and w.registry.champion() == "v2"


def test_a_restart_refuses_a_candidate_left_in_shadow(tmp_path: Path) -> None:
    w = World(tmp_path, mode="shadow")
    w.save("v1", 0.0, None, [])
    w.registry.promote("v1", {"reason": "bootstrap"})
    w.save("v2", 1.0, "v1", ["v1"])
    w.keeper.judge("t1", w.result("v1", "v2"), w.unit("v1"))
    fresh = Gatekeeper(w.cfg, w.registry, w.events, lambda _: None)
    fresh.recover([v.version for v in w.registry.list()])
    assert w.registry.get("v2").status == "refused"
    assert "stopped during the shadow" in w.events.list()[-1].raw["reasons"][0]


def shadow_world(tmp_path: Path) -> World:
    w = World(tmp_path, persist=True, mode="shadow", shadow_rows=200)
    w.save("v1", 0.0, None, [])
    w.registry.promote("v1", {"reason": "bootstrap"})
    w.save("v2", 1.0, "v1", ["v1"])
    assert w.keeper.judge("t1", w.result("v1", "v2"), w.unit("v1")) is None
    return w


def test_a_restart_mid_shadow_resumes_where_it_was(tmp_path: Path) -> None:
    w = shadow_world(tmp_path)
    x, y = rows(250, seed=5)
    y[::5] = -1  # unlabelled rows are skipped
    assert w.live(np.arange(100), x[:100], y[:100], w.unit("v1")) is None
    keeper = w.restart("v1")
    assert keeper.shadow is not None and keeper.shadow.rows == 80
    assert w.registry.get("v2").status == "candidate"
    assert keeper.protected() == frozenset({"v2"})
    assert w.live(np.arange(100, 250), x[100:], y[100:], w.unit("v1")) == "v2"
    final = w.events.last(ev.GATE_PASSED)
    assert final is not None and final.raw["stage"] == "shadow"
    new = next(c for c in final.raw["checks"] if c["name"] == "new_data")
    assert new["n"] == 200 and w.registry.champion() == "v2"
    assert w.restart("v2").shadow is None  # finished: nothing left to resume


def test_a_shadow_that_cannot_be_resumed_refuses_its_candidate(tmp_path: Path) -> None:
    w = shadow_world(tmp_path)
    Path(str(w.result("v1", "v2")["evidence"]["path"])).unlink()
    assert w.restart("v1").shadow is None
    assert w.registry.get("v2").status == "refused"
    assert "could not be resumed" in w.events.list()[-1].raw["reasons"][0]


# -- the rollback watch ----------------------------------------------------------------------


def test_a_restart_mid_watch_resumes_and_rolls_back(tmp_path: Path) -> None:
    w = World(tmp_path, persist=True)
    w.save("v1", 1.0, None, [])  # right everywhere
    w.registry.promote("v1", {"reason": "bootstrap"})
    w.save("v2", 0.0, "v1", [])  # always class 0
    w.registry.promote("v2", {"reason": "test"})
    w.keeper.followed("v2")
    x, y = rows(300, seed=7)
    assert w.live(np.arange(150), x[:150], y[:150], w.unit("v2")) is None
    keeper = w.restart("v2")
    assert keeper.watch is not None and keeper.watch.rows == 150
    assert w.live(np.arange(150, 300), x[150:], y[150:], w.unit("v2")) == "v1"
    rolled = w.events.last(ev.MODEL_ROLLED_BACK)
    assert rolled is not None
    assert rolled.raw["evidence"]["rows"] == 300
    assert rolled.raw["evidence"]["first_row"] == 0
    assert w.restart("v1").watch is None  # over: a later restart watches nothing


def test_a_watch_is_not_resumed_for_another_champion(tmp_path: Path) -> None:
    w = World(tmp_path, persist=True)
    w.save("v1", 1.0, None, [])
    w.registry.promote("v1", {"reason": "bootstrap"})
    w.save("v2", 0.0, "v1", [])
    w.registry.promote("v2", {"reason": "test"})
    w.keeper.followed("v2")
    x, y = rows(100, seed=7)
    w.live(np.arange(100), x, y, w.unit("v2"))
    w.registry.rollback("v1", reason="by hand")
    assert w.restart("v1").watch is None


def test_watch_rolls_back_a_promotion_that_errs_more_live(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.save("v1", 1.0, None, [])  # right everywhere
    w.registry.promote("v1", {"reason": "bootstrap"})
    w.save("v2", 0.0, "v1", [])  # always class 0
    old = w.unit("v1")
    w.registry.promote("v2", {"reason": "test"})
    w.keeper.followed("v2")
    assert w.keeper.watch is not None
    x, y = rows(300, seed=7)
    back = w.keeper.observe(np.arange(300), x, y, w.unit("v2"))
    assert back == "v1" and w.registry.champion() == "v1"
    rolled = w.events.last(ev.MODEL_ROLLED_BACK)
    assert rolled is not None and rolled.raw["reason"].startswith("automatic")
    evidence = rolled.raw["evidence"]
    assert evidence["rows"] == 300 and evidence["p_value"] < 0.01
    assert evidence["error_rate"] > evidence["predecessor_error_rate"]
    del old


def test_watch_keeps_a_champion_that_is_not_worse(world: World) -> None:
    world.keeper.judge("t1", world.result("v1", "v2"), world.unit("v1"))
    x, y = rows(300, seed=8)
    assert world.keeper.observe(np.arange(300), x, y, world.unit("v2")) is None
    assert world.keeper.watch is None and world.registry.champion() == "v2"


def test_mcnemar_and_worse_than_before_on_equal_models() -> None:
    assert mcnemar_greater(5, 5) > 0.5 and mcnemar_greater(20, 2) < 1e-3
    m = torch.nn.Linear(2, 2)
    live = PairedLive("v1", "v2", m, m, 10)
    live.add(np.arange(10), np.zeros((10, 2)), np.zeros(10, dtype=np.int64))
    assert worse_than_before(live, 0.05) is None


# -- the daemon resumes what the gatekeeper persisted ----------------------------------------


def test_a_restarted_daemon_resumes_the_watch_it_left(
    burst: tuple[DriftloopConfig, list[ev.Event]], tmp_path: Path
) -> None:
    from runtime.daemon import Daemon

    cfg = burst[0].model_copy(update={"state_dir": tmp_path / "state"})
    shutil.copytree(burst[0].state_dir, cfg.state_dir)
    db = Database.for_state_dir(cfg.state_dir, None)
    assert Registry(db, cfg.state_dir / "models", EventLog(db)).champion() == "v2"
    seqs, _, _ = labelled_rows(db, len(cfg.schema.features), since=0, limit=120)
    watch = {"champion": "v2", "predecessor": "v1", "wanted": 5000, "seqs": seqs.tolist()}
    save_live_state(db, LIVE_KEY, {"version": 1, "shadow": None, "watch": watch})
    db.dispose()
    said: list[str] = []
    daemon = Daemon(cfg, report=said.append)
    daemon.open()  # as after a crash mid-watch: the state says 120 rows were scored
    try:
        resumed = daemon.gatekeeper.watch
        assert resumed is not None and resumed.reference_version == "v1"
        assert resumed.seq_list() == seqs.tolist() and resumed.wanted == 5000
        assert "resumed the watch of v2: 120/5000 labelled rows" in said
    finally:
        daemon.close()
