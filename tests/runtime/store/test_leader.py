"""Leader election on PostgreSQL: exactly one leads; a follower takes over in seconds."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from runtime.config import LeaderConfig
from runtime.store.db import Database
from runtime.store.leader import AdvisoryLock, Solo, lock_key
from runtime.store.leader import build as build_leader
from tests.runtime.processes import Service, base_config, free_port, postgres_schema, wait_until

pytestmark = pytest.mark.postgres


def test_lock_keys_differ_by_schema_and_name() -> None:
    keys = {lock_key("test", s, n) for s in ("a", "b") for n in ("x", "y")}
    assert len(keys) == 4
    assert all(-(2**63) <= k < 2**63 for k in keys)


def test_solo_always_leads() -> None:
    solo = build_leader(Database("sqlite://"), None)
    assert isinstance(solo, Solo) and solo.poll() and solo.is_leader()


def test_exactly_one_leads_and_the_other_takes_over() -> None:
    with postgres_schema() as url:
        db = Database(url)
        a = AdvisoryLock(db, LeaderConfig(name="m", instance="a", poll_seconds=0.05))
        b = AdvisoryLock(db, LeaderConfig(name="m", instance="b", poll_seconds=0.05))
        other = AdvisoryLock(db, LeaderConfig(name="other-model", instance="c"))
        try:
            assert a.poll(force=True) is True
            assert b.poll(force=True) is False
            assert other.poll(force=True) is True  # another election on the same database
            assert a.poll(force=True) is True  # re-checking keeps it
            a.close()
            assert b.poll(force=True) is True
            assert a.is_leader() is False
        finally:
            for lock in (a, b, other):
                lock.close()
            db.dispose()


def test_leader_that_loses_its_session_steps_down() -> None:
    with postgres_schema() as url:
        db = Database(url)
        a = AdvisoryLock(db, LeaderConfig(name="m", instance="a"))
        b = AdvisoryLock(db, LeaderConfig(name="m", instance="b"))
        try:
            assert a.poll(force=True)
            assert a._conn is not None
            pid = a._conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            with db.begin() as conn:  # the server ends the leader's session
                conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
            assert a.poll(force=True) is False
            assert b.poll(force=True) is True
        finally:
            a.close()
            b.close()
            db.dispose()


def test_two_daemons_one_database_failover(tmp_path: Path) -> None:
    with postgres_schema() as url:
        services = []
        for name in ("one", "two"):
            cfg = base_config(
                tmp_path,
                free_port(),
                database_url=url,
                leader={"name": "m", "instance": name, "poll_seconds": 0.5},
            )
            services.append(Service(tmp_path, cfg, name=name))
        try:
            for svc in services:
                svc.start()

            def leaders() -> list[bool]:
                return [s.client.get("/v1/status").json()["leader"] for s in services]

            wait_until(lambda: sum(leaders()) == 1, 30, "exactly one leader")
            time.sleep(1.5)  # and it stays that way
            assert sum(leaders()) == 1
            lead, follow = (services[0], services[1]) if leaders()[0] else services[::-1]
            assert follow.client.get("/v1/events").status_code == 200  # the follower serves reads
            lead.kill(signal.SIGKILL)
            lead.wait(10)
            died = time.monotonic()
            wait_until(
                lambda: follow.client.get("/v1/status").json()["leader"], 10, "takeover", follow
            )
            takeover = time.monotonic() - died
            assert takeover < 5.0, f"takeover took {takeover:.1f} s"
        finally:
            for svc in services:
                svc.stop()
