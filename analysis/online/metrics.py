"""The metrics of a feedlab experiment, and the one test each is judged by."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from feedlab.analysis.stats.frequentist import (
    Comparison,
    ratio_ztest,
    two_proportion_ztest,
    welch_ttest,
)
from feedlab.analysis.stats.moments import JointStats, MeanStats
from feedlab.experiments.config import DEFAULT_DECISION_METRIC


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    kind: str  # mean | ratio | proportion
    column: str  # per-user column in the `pu` table


METRICS = (
    Metric("hitrate", "HitRate (hits / exposures, per user)", "mean", "hr"),
    Metric("like_rate", "like-rate (likes / posts served, ratio)", "ratio", "liked"),
    Metric("like_rate_user", "like-rate (per-user mean)", "mean", "lr"),
    Metric("likes_per_user", "likes per user", "mean", "liked"),
    Metric("converted", "users with ≥1 hit", "proportion", "conv"),
)
BY_KEY = {m.key: m for m in METRICS}
DEFAULT = DEFAULT_DECISION_METRIC

TEST_NAMES = {
    "mean": "Welch t-test",
    "ratio": "delta-method z-test",
    "proportion": "two-proportion z-test (unpooled)",
}


class Sums(Protocol):
    """Per-arm sufficient statistics (ArmSums for the whole phase, LookSums for one look)."""

    @property
    def n(self) -> float: ...

    @property
    def conv(self) -> float: ...

    def mean(self, column: str) -> MeanStats: ...

    def ratio(self) -> JointStats: ...


def metric_test(metric: Metric, a: Sums, b: Sums, alpha: float) -> Comparison:
    """The test a metric is judged by, test arm b against control a."""
    if metric.kind == "mean":
        return welch_ttest(a.mean(metric.column), b.mean(metric.column), alpha)
    if metric.kind == "ratio":
        return ratio_ztest(a.ratio(), b.ratio(), alpha)
    return two_proportion_ztest(a.conv, a.n, b.conv, b.n, alpha)
