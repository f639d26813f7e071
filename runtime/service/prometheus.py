"""Prometheus metrics (``GET /metrics``), read from the database at scrape time.

Counts come from the shared database, not from in-process counters, so every daemon of
a deployment reports the same totals and a restart does not reset them; the live
detector statistics and the monitoring queue come from this process. The HTTP request
counters are in-process (they describe this server).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from runtime.store import estimated, estimated_mae, served
from runtime.store import events as ev
from runtime.store.db import Database, from_json, quarantine, retrain_requests, rows
from runtime.store.db import events as events_table
from runtime.store.versions import Registry

RuntimeStatus = Callable[[], dict[str, Any]]


class StateCollector(Collector):
    """Collects the driftloop families from the database and the running daemon."""

    def __init__(self, db: Database, registry: Registry, runtime: RuntimeStatus) -> None:
        self.db = db
        self.registry = registry
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        yield from self._rows()
        yield from self._events()
        yield from self._champion()
        yield from self._realized()
        yield from self._estimated()
        yield from self._estimated_mae()
        yield from self._live()

    def _rows(self) -> Iterator[Metric]:
        with self.db.connect() as conn:
            n = conn.execute(select(func.count()).select_from(rows)).scalar_one()
            labelled = conn.execute(
                select(func.count()).select_from(rows).where(rows.c.label.is_not(None))
            ).scalar_one()
            rejected = conn.execute(select(func.count()).select_from(quarantine)).scalar_one()
            by_status = conn.execute(
                select(retrain_requests.c.status, func.count()).group_by(retrain_requests.c.status)
            ).all()
        yield CounterMetricFamily("driftloop_rows_ingested", "Rows accepted and stored.", n)
        yield CounterMetricFamily("driftloop_rows_labelled", "Stored rows with a label.", labelled)
        yield CounterMetricFamily(
            "driftloop_rows_rejected", "Rows refused by validation (quarantined).", rejected
        )
        req = GaugeMetricFamily(
            "driftloop_retrain_requests", "Retrain requests by status.", labels=["status"]
        )
        for status, count in by_status:
            req.add_metric([str(status)], count)
        yield req

    def _events(self) -> Iterator[Metric]:
        with self.db.connect() as conn:
            counts: dict[str, int] = dict(
                conn.execute(
                    select(events_table.c.kind, func.count()).group_by(events_table.c.kind)
                ).all()
            )
            alarms = conn.execute(
                select(events_table.c.payload).where(events_table.c.kind == ev.DRIFT_DETECTED)
            ).all()
            finished = conn.execute(
                select(events_table.c.payload).where(events_table.c.kind == ev.RETRAIN_FINISHED)
            ).all()
        by_detector: dict[str, int] = {}
        for (payload,) in alarms:
            name = ev.DriftDetected.from_json(from_json(payload)).detector
            by_detector[name] = by_detector.get(name, 0) + 1
        alarm = CounterMetricFamily(
            "driftloop_drift_alarms", "drift.detected events by detector.", labels=["detector"]
        )
        for name, count in sorted(by_detector.items()):
            alarm.add_metric([name], count)
        yield alarm
        gate = CounterMetricFamily(
            "driftloop_gate_outcomes", "Gate decisions by outcome.", labels=["outcome"]
        )
        gate.add_metric(["passed"], counts.get(ev.GATE_PASSED, 0))
        gate.add_metric(["failed"], counts.get(ev.GATE_FAILED, 0))
        yield gate
        retrains = CounterMetricFamily(
            "driftloop_retrains", "Finished retrain jobs by result.", labels=["result"]
        )
        retrains.add_metric(["finished"], counts.get(ev.RETRAIN_FINISHED, 0))
        retrains.add_metric(["failed"], counts.get(ev.RETRAIN_FAILED, 0))
        yield retrains
        seconds = [
            float(ev.RetrainFinished.from_json(from_json(p)).wall_seconds or 0.0)
            for (p,) in finished
        ]
        yield SummaryMetricFamily(
            "driftloop_retrain_duration_seconds",
            "Wall time of finished retrain jobs.",
            count_value=len(seconds),
            sum_value=sum(seconds),
        )
        kinds = CounterMetricFamily("driftloop_events", "Events by kind.", labels=["kind"])
        for kind, count in sorted(counts.items()):
            kinds.add_metric([str(kind)], count)
        yield kinds

    def _champion(self) -> Iterator[Metric]:
        champion = self.registry.champion()
        info = GaugeMetricFamily(
            "driftloop_champion_info", "The champion version (value 1).", labels=["version"]
        )
        number = GaugeMetricFamily(
            "driftloop_champion_version", "The champion's version number (vN → N; 0: none)."
        )
        if champion is not None:
            info.add_metric([champion], 1)
        digits = champion[1:] if champion else ""
        number.add_metric([], int(digits) if digits.isdigit() else 0)
        yield info
        yield number

    def _realized(self) -> Iterator[Metric]:
        """The served predictions' realized accuracy (a regression champion's: MAE, in
        target units): over the recent windows, and per version (the last versions that
        served, each on its own last rows)."""
        champion = self.registry.champion()
        meta = self.registry.get(champion).meta if champion else None
        metric: served.Metric = "mae" if meta is not None and "target" in meta else "accuracy"
        summary = served.realized_summary(self.db, metric=metric)
        families = {m: (GaugeMetricFamily(
            f"driftloop_realized_{m}",
            f"{name} of the served predictions over the last N labelled served rows.",
            labels=["window"],
        ), GaugeMetricFamily(
            f"driftloop_realized_{m}_by_version",
            f"Each version's {name} on its last {served.DEFAULT_WINDOW} labelled served rows.",
            labels=["version"],
        )) for m, name in (("accuracy", "Accuracy"), ("mae", "Mean absolute error"))}
        recent, per = families[metric]
        for r in summary["recent"]:
            if r["value"] is not None:
                recent.add_metric([str(r["window"])], r["value"])
        rows = GaugeMetricFamily(
            "driftloop_realized_rows_by_version",
            "Labelled served rows behind each version's realized accuracy (or MAE).",
            labels=["version"],
        )
        for version, r in summary["by_version"].items():
            if r["value"] is not None:
                per.add_metric([version], r["value"])
                rows.add_metric([version], r["rows"])
        for pair in families.values():
            yield from pair
        yield rows

    def _estimated(self) -> Iterator[Metric]:
        """The champion's label-free accuracy estimate (CBPE) with its band, its expected
        macro-F1, and 1 where labels arrived and the realized accuracy fell outside the
        band (concept drift)."""
        champion = self.registry.champion()
        meta = self.registry.get(champion).meta if champion else None
        got = estimated.estimated_summary(self.db, champion, meta)
        window = f"on its last {served.DEFAULT_WINDOW} monitored rows"
        families = {
            "value": GaugeMetricFamily(
                "driftloop_estimated_accuracy",
                f"The champion's expected accuracy {window}, from its calibrated confidence "
                "(no labels needed).", labels=["version"]),
            "low": GaugeMetricFamily(
                "driftloop_estimated_accuracy_low",
                "Lower end of the estimated accuracy's band.", labels=["version"]),
            "high": GaugeMetricFamily(
                "driftloop_estimated_accuracy_high",
                "Upper end of the estimated accuracy's band.", labels=["version"]),
        }
        f1 = GaugeMetricFamily(
            "driftloop_estimated_macro_f1",
            f"The champion's expected macro-F1 {window}, from its calibrated class "
            "probabilities (no labels needed).", labels=["version"])
        diverged = GaugeMetricFamily(
            "driftloop_estimated_diverged",
            "1 when the realized accuracy on the same labelled rows is outside the band.",
            labels=["version"],
        )
        if got is not None and got["value"] is not None:
            for bound, family in families.items():
                family.add_metric([str(champion)], float(got[bound]))  # type: ignore[arg-type]
            if got.get("macro_f1") is not None:
                f1.add_metric([str(champion)], float(got["macro_f1"]))  # type: ignore[arg-type]
            vs = got["versus_realized"]
            if isinstance(vs, dict):
                diverged.add_metric([str(champion)], 1.0 if vs["diverged"] else 0.0)
        yield from families.values()
        yield f1
        yield diverged

    def _estimated_mae(self) -> Iterator[Metric]:
        """A regression champion's expected MAE from its loss model (no labels needed)."""
        champion = self.registry.champion()
        gauge = GaugeMetricFamily(
            "driftloop_estimated_mae",
            f"The champion's expected MAE on its last {served.DEFAULT_WINDOW} monitored rows, "
            "from its loss model (regression; no labels needed).", labels=["version"])
        got = estimated_mae.estimated_mae(self.db, champion)
        if got is not None and got["value"] is not None:
            gauge.add_metric([str(champion)], float(got["value"]))  # type: ignore[arg-type]
        yield gauge

    def _live(self) -> Iterator[Metric]:
        st = self.runtime()
        stat = GaugeMetricFamily(
            "driftloop_detector_statistic",
            "Each detector's latest statistic.",
            labels=["detector", "signal"],
        )
        thr = GaugeMetricFamily(
            "driftloop_detector_threshold",
            "Each detector's alarm threshold.",
            labels=["detector", "signal"],
        )
        drift = GaugeMetricFamily(
            "driftloop_detector_drift",
            "1 while a detector signals drift.",
            labels=["detector", "signal"],
        )
        for name, d in sorted(st.get("detectors", {}).items()):
            key = [name, str(d.get("signal"))]
            if d.get("statistic") is not None:
                stat.add_metric(key, float(d["statistic"]))
            if d.get("threshold") is not None:
                thr.add_metric(key, float(d["threshold"]))
            drift.add_metric(key, 1.0 if d.get("drift") else 0.0)
        yield stat
        yield thr
        yield drift
        leader = GaugeMetricFamily(
            "driftloop_leader", "1 if this daemon leads.", labels=["instance"]
        )
        leader.add_metric([str(st.get("instance"))], 1.0 if st.get("leader") else 0.0)
        yield leader
        lag = GaugeMetricFamily(
            "driftloop_source_lag_messages",
            "Messages in the broker not yet stored and acknowledged, per partition.",
            labels=["source", "partition"],
        )
        for partition, n in sorted((st.get("source_lag") or {}).items()):
            lag.add_metric([str(st.get("source")), partition], n)
        yield lag
        yield GaugeMetricFamily(
            "driftloop_monitor_queue_rows",
            "Rows accepted over HTTP not yet seen by the detectors.",
            st.get("monitor_queue_rows", 0),
        )
        yield CounterMetricFamily(
            "driftloop_monitor_dropped_rows",
            "Rows stored but skipped by monitoring because the queue stayed full.",
            st.get("monitor_dropped_rows", 0),
        )


class HttpMetrics:
    """Request counts and latencies of this server."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "driftloop_http_requests",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "driftloop_http_request_seconds",
            "HTTP request latency by route.",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
            registry=registry,
        )


def build_registry(
    db: Database, registry: Registry, runtime: RuntimeStatus
) -> tuple[CollectorRegistry, HttpMetrics]:
    """A fresh Prometheus registry (one per app, so tests never collide)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(StateCollector(db, registry, runtime))
    return reg, HttpMetrics(reg)
