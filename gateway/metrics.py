"""Prometheus metrics of one gateway app (own registry, so several apps can live in a process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from feedlab.gateway.exposures import ExposureLog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._arms: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        labels = ["experiment", "exp_group"]
        self.requests = Counter(
            "feedlab_recommendation_requests",
            "Recommendation responses served, per arm.",
            labels,
            registry=self.registry,
        )
        self.errors = Counter(
            "feedlab_backend_errors",
            "Model backend failures (errors and timeouts), per arm and model.",
            [*labels, "model", "reason"],
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "feedlab_fallbacks",
            "Responses served from the popular fallback because the arm's model failed.",
            [*labels, "model"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "feedlab_recommendation_latency_seconds",
            "Time to answer GET /post/recommendations/, per arm.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.bad_requests = Counter(
            "feedlab_invalid_requests",
            "Requests refused with 422.",
            ["path"],
            registry=self.registry,
        )
        self.feed_events = Counter(
            "feedlab_feed_events",
            "Feed events received by POST /feed, by outcome (stored | duplicate).",
            ["outcome"],
            registry=self.registry,
        )
        self.reloads = Counter(
            "feedlab_config_reloads",
            "Config reloads by source (startup | file | admin) and outcome "
            "(applied | unchanged | refused).",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.config_info = Gauge(
            "feedlab_config_version_info",
            "1 for the config version in force.",
            ["config_version"],
            registry=self.registry,
        )
        self.redis_errors = Counter(
            "feedlab_redis_errors",
            "Failed or timed-out Redis calls of the online state, by operation "
            "(start | publish | sync); requests are served from local state meanwhile.",
            ["op"],
            registry=self.registry,
        )

    def served(self, experiment: str, exp_group: str, latency_s: float) -> None:
        """Count one response of an arm and its latency. The labelled children are kept per
        arm: `labels()` costs more than the increment itself on every request."""
        key = (experiment, exp_group)
        arm = self._arms.get(key)
        if arm is None:
            arm = self._arms[key] = (self.requests.labels(*key), self.latency.labels(*key))
        arm[0].inc()
        arm[1].observe(latency_s)

    def watch_redis(self, up: Callable[[], bool], pending: Callable[[], int]) -> None:
        """Gauges read at scrape time: whether Redis answered the last call, and the feed
        events stored while it did not, still to be appended to the stream."""
        Gauge(
            "feedlab_redis_up", "1 when Redis answered the last call.", registry=self.registry
        ).set_function(lambda: float(up()))
        Gauge(
            "feedlab_redis_pending_events",
            "Feed events stored while Redis was down, not yet appended to its stream.",
            registry=self.registry,
        ).set_function(lambda: float(pending()))

    def watch_exposures(self, exposure_log: ExposureLog) -> None:
        self.registry.register(_ExposureCollector(exposure_log))

    def count_reload(self, source: str, outcome: str) -> None:
        self.reloads.labels(source, outcome).inc()

    def set_config_version(self, version: str) -> None:
        self.config_info.clear()
        self.config_info.labels(version).set(1)


class _ExposureCollector(Collector):
    """Reads the writer's own counters at scrape time (no locking on the request path)."""

    def __init__(self, exposure_log: ExposureLog) -> None:
        self.log = exposure_log

    def collect(self) -> Iterator[Metric]:
        s = self.log.stats
        yield GaugeMetricFamily(
            "feedlab_exposure_queue_depth",
            "Exposure records waiting for the writer.",
            value=self.log.depth(),
        )
        for name, doc, value in (
            (
                "feedlab_exposures_dropped",
                "Exposures lost (queue full and spool failed).",
                s.dropped,
            ),
            ("feedlab_exposures_spooled", "Exposures written to the local spool.", s.spooled),
            ("feedlab_exposures_written", "Exposures written to the database.", s.written),
            (
                "feedlab_exposures_replayed",
                "Spooled exposures replayed into the database.",
                s.replayed,
            ),
            (
                "feedlab_exposures_dead_lettered",
                "Records the database refused for their content, kept in the dead-letter file.",
                s.dead_lettered,
            ),
            (
                "feedlab_exposure_db_errors",
                "Failed database writes of the exposure log.",
                s.db_errors,
            ),
        ):
            yield CounterMetricFamily(name, doc, value=value)
