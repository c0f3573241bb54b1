"""The metrics of a feedlab experiment and how each maps onto per-arm sufficient statistics."""

from __future__ import annotations

from dataclasses import dataclass

from feedlab.analysis.stats.moments import JointStats


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    kind: str  # mean | ratio | proportion
    column: str | None = None  # per-user column in the `pu` table (mean/proportion)


METRICS = (
    Metric("hitrate", "HitRate (hits / exposures, per user)", "mean", "hr"),
    Metric("like_rate", "like-rate (likes / posts served, ratio)", "ratio"),
    Metric("like_rate_user", "like-rate (per-user mean)", "mean", "lr"),
    Metric("likes_per_user", "likes per user", "mean", "liked"),
    Metric("converted", "users with ≥1 hit", "proportion", "conv"),
)
PRIMARY = "hitrate"


def mean_stats(s: dict[str, float], column: str) -> JointStats:
    """Metric (a) with its pre-period covariate (b) from the `arm_sums` of one arm."""
    if column == "liked":
        return JointStats(
            s["n"], s["liked"], s["liked_pre"], s["liked_sq"], s["liked_pre_sq"], s["liked_x_pre"]
        )
    c = column
    return JointStats(s["n"], s[c], s[f"{c}_pre"], s[f"{c}_sq"], s[f"{c}_pre_sq"], s[f"{c}_x_pre"])


def ratio_stats(s: dict[str, float]) -> JointStats:
    return JointStats(
        s["n"], s["liked"], s["items_f"], s["liked_sq"], s["items_sq"], s["liked_items"]
    )
