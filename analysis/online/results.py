"""Typed results of the online analysis, from the SQL layer to the report.

`queries` returns `ArmSums` and `BucketSums`; `analyze` builds a `Report`; the renderers read
it by attribute. JSON appears only at the edge (`analysis.report.serialize`), whose schema is
generated from these classes and pinned by a test."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from feedlab.analysis.stats.bootstrap import BootstrapResult
from feedlab.analysis.stats.frequentist import Comparison
from feedlab.analysis.stats.moments import JointStats, MeanStats, RegressionStats
from feedlab.analysis.stats.sequential import SequentialResult
from feedlab.analysis.stats.srm import SrmResult

# -- from SQL ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CovariateSums:
    """One per-user metric y of one arm with its two CUPED covariates: x, the same metric in
    the pre-period (0 without pre-period data), and d, 1 when the user has pre-period data."""

    y: float
    yy: float
    x: float
    xx: float
    xd: float
    yx: float
    yd: float


@dataclass(frozen=True)
class ArmSums:
    """Per-arm sufficient statistics of every per-user metric (one SQL row)."""

    n: float
    has_pre: float
    conv: float
    items: float
    items_sq: float
    liked_items: float
    hr: CovariateSums
    lr: CovariateSums
    liked: CovariateSums

    def covariate(self, column: str) -> CovariateSums:
        return {"hr": self.hr, "lr": self.lr, "liked": self.liked}[column]

    def mean(self, column: str) -> MeanStats:
        c = self.covariate(column)
        return MeanStats(self.n, c.y, c.yy)

    def regression(self, column: str) -> RegressionStats:
        """The metric with covariates (pre-period value, has-pre-period indicator)."""
        c = self.covariate(column)
        d = self.has_pre  # d * d = d for an indicator
        return RegressionStats(self.n, c.y, c.yy, (c.x, d), ((c.xx, c.xd), (c.xd, d)), (c.yx, c.yd))

    def ratio(self) -> JointStats:
        """likes / posts served: numerator and denominator per user."""
        return JointStats(
            self.n, self.liked.y, self.items, self.liked.yy, self.items_sq, self.liked_items
        )


@dataclass(frozen=True)
class BucketSums:
    """Per user bucket of one arm: users and the sums of each per-user column (bootstrap)."""

    users: np.ndarray
    hr: np.ndarray
    lr: np.ndarray
    liked: np.ndarray
    items: np.ndarray

    def column(self, name: str) -> np.ndarray:
        return {"hr": self.hr, "lr": self.lr, "liked": self.liked, "items": self.items}[name]


@dataclass(frozen=True)
class LookSums:
    """One arm's sufficient statistics as they stood at the end of one day (a look), each
    built only from exposures and likes that had happened by then."""

    day: str
    n: float
    hr: float
    hr_sq: float
    lr: float
    lr_sq: float
    liked: float
    liked_sq: float
    items: float
    items_sq: float
    liked_items: float
    conv: float

    def mean(self, column: str) -> MeanStats:
        return MeanStats(self.n, getattr(self, column), getattr(self, f"{column}_sq"))

    def ratio(self) -> JointStats:
        return JointStats(
            self.n, self.liked, self.items, self.liked_sq, self.items_sq, self.liked_items
        )


# -- report -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmConfig:
    name: str
    weight: float
    model: str | None


@dataclass(frozen=True)
class CupedResult:
    """CUPED on one metric: the adjusted test, or `applied` False with the reason."""

    applied: bool
    reason: str | None
    theta: list[float]
    result: Comparison | None


@dataclass(frozen=True)
class MetricResult:
    metric: str
    label: str
    kind: str
    role: str  # decision | secondary
    test: Comparison
    p_adjusted: float
    significant: bool
    cuped: CupedResult | None
    mann_whitney: Comparison | None
    bootstrap: BootstrapResult | None
    sd_control: float | None


@dataclass(frozen=True)
class Verdict:
    status: str  # win | loss | inconclusive | invalid
    text: str
    basis: str
    metric: str
    p_value: float


@dataclass(frozen=True)
class SequentialSummary:
    """The group-sequential test over daily looks (information fraction = days elapsed /
    planned days)."""

    test: SequentialResult
    days: list[str]
    planned_days: int
    complete: bool


@dataclass(frozen=True)
class AnytimeLook:
    day: str
    users: int
    diff: float
    cs_low: float
    cs_high: float


@dataclass(frozen=True)
class AnytimeSummary:
    """Asymptotic confidence sequence on the decision metric's difference at every look."""

    n_tune: float
    looks: list[AnytimeLook]
    rejected: bool
    first_rejection: str | None


@dataclass(frozen=True)
class ComparisonResult:
    arm: str
    control: str
    metrics: list[MetricResult]
    mde_decision: float | None
    sequential: SequentialSummary | None
    anytime: AnytimeSummary | None
    verdict: Verdict

    def metric(self, key: str) -> MetricResult:
        return next(m for m in self.metrics if m.metric == key)


@dataclass(frozen=True)
class Interval:
    diff: float
    ci_low: float
    ci_high: float
    lift: float


@dataclass(frozen=True)
class EffectPoint:
    """The decision metric's difference (test - control) at one day: `cumulative` uses the
    data available at that day's end; `day` only that day's exposures."""

    arm: str
    day: str
    kind: str  # cumulative | day
    users: int
    effect: Interval
    z: float
    se: float


@dataclass(frozen=True)
class Guardrail:
    exposures: int
    fallback_rate: float
    latency_mean_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None


@dataclass(frozen=True)
class Health:
    """Checks on top of every report: when any fails, the metrics below it are suspect."""

    srm: SrmResult
    multi_arm_users_excluded: int
    carried_over_users: int
    carried_over_excluded: bool
    qa_exposures_excluded: int
    outside_range_exposures: int
    outside_active_time_exposures: int
    """Exposures of this phase served while another config of the experiment was active
    (e.g. a worker still on the old config after a reload): reported, not pooled in."""
    unknown_groups: list[str]


@dataclass(frozen=True)
class Capping:
    quantile: float | None
    caps: dict[str, float] = field(default_factory=dict)
    capped_users: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PhaseResult:
    config_version: str
    config_versions: list[str]
    loaded_at: datetime | None
    salt: str | None
    traffic: float | None
    arms: list[ArmConfig]
    decision_metric: str
    segment: int
    start: datetime
    end: datetime
    pre_period: list[datetime] | None
    exposures: int
    users: dict[str, int]
    control: str
    health: Health
    warnings: list[str]
    capping: Capping
    comparisons: list[ComparisonResult]
    guardrails: dict[str, Guardrail]
    effects: list[EffectPoint]
    timings_s: dict[str, float]

    @property
    def weights(self) -> dict[str, float]:
        return {a.name: a.weight for a in self.arms}


@dataclass(frozen=True)
class Report:
    experiment: str
    generated_at: datetime
    window_s: float
    alpha: float
    correction: str
    attribution: str
    range_from: datetime | None
    range_to: datetime | None
    notes: list[str]
    phases: list[PhaseResult]
