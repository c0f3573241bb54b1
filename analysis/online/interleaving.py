"""`feedlab analyze` for an interleaving experiment: per-user credits from the exposure log,
the preference test, and the team balance per rank.

Credit: each like of a user on a served post goes to the latest exposure of that post to that
user in the phase whose time is at most `window` before the like (the same window as HitRate),
so a like counts once however often the post was shown; it credits the arm that contributed the
post there. Likes whose latest exposure was a fallback (one arm's list served whole) credit
nobody: such a list is no comparison. Every user exposed in the phase counts, with 0/0 as a tie.

QA exposures (marked by the gateway) are never analysed, as in the A/B analysis: they count no
user, no exposure and no team, and a like whose latest exposure was a QA one credits nobody.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from feedlab.analysis.online.queries import PhaseSpan, liked_within, likes_on_served, list_phases
from feedlab.analysis.stats.interleaving import (
    Preference,
    position_balance,
    preference,
    users_needed,
)
from feedlab.experiments.config import INTERLEAVED_GROUP, parse_config
from feedlab.storage.clock import utcnow
from feedlab.storage.schema import experiment_configs, exposure_items, exposures, feed
from sqlalchemy import ColumnElement, Connection, Engine, and_, func, select

DESIGN = "interleaving"


@dataclass(frozen=True)
class Credits:
    """Per exposed user (sorted by id): likes credited to control and to test."""

    user_ids: np.ndarray
    control: np.ndarray
    test: np.ndarray


def is_interleaving(engine: Engine, experiment: str) -> bool:
    """Whether `experiment` served interleaved lists (then `analyze` dispatches here)."""
    e = exposures.c
    q = select(e.request_id).where(e.experiment == experiment, e.exp_group == INTERLEAVED_GROUP)
    with engine.connect() as conn:
        return conn.execute(q.limit(1)).first() is not None


def arm_names(conn: Connection, experiment: str, version: str) -> tuple[str, str]:
    """(control, test): the experiment's arms in declared order, from the stored config."""
    text = conn.execute(
        select(experiment_configs.c.yaml).where(experiment_configs.c.config_version == version)
    ).scalar_one_or_none()
    if text is None:
        raise LookupError(f"config_version {version!r} is not in experiment_configs")
    config = parse_config(text, source=f"experiment_configs[{version}]").config
    exp = next((x for x in config.experiments if x.name == experiment), None)
    if exp is None or len(exp.arms) != 2:
        raise LookupError(f"config {version}: no two-arm experiment named {experiment!r}")
    return exp.arms[0].name, exp.arms[1].name


def _phase(experiment: str, version: str, qa: bool | None = False) -> ColumnElement[bool]:
    """The phase's exposures: non-QA ones, or (qa=None) all of them."""
    e = exposures.c
    cond = and_(
        e.experiment == experiment,
        e.config_version == version,
        e.exp_group == INTERLEAVED_GROUP,
    )
    return cond if qa is None else and_(cond, e.qa.is_(qa))


def user_credits(
    conn: Connection, experiment: str, version: str, arms: tuple[str, str], window_s: float
) -> Credits:
    """Every exposed user's credited likes per arm (see the module docstring). The latest
    exposure is found among all of the phase's, QA ones included, and only then QA is dropped,
    so a QA request that re-served a post takes its credit out rather than handing it to an
    older exposure."""
    e, i, f = exposures.c, exposure_items.c, feed.c
    cond = _phase(experiment, version)
    lo, hi = conn.execute(select(func.min(e.ts), func.max(e.ts)).where(cond)).one()
    candidates = (
        select(
            f.id.label("like_id"),
            f.user_id,
            i.team,
            e.fallback,
            e.qa,
            func.row_number()
            .over(partition_by=f.id, order_by=(i.ts.desc(), i.request_id.desc()))
            .label("latest"),
        )
        .select_from(likes_on_served())
        .where(_phase(experiment, version, qa=None), *liked_within(lo, hi, window_s))
        .subquery("candidates")
    )
    c = candidates.c
    credited = (
        select(c.user_id, c.team, func.count().label("likes"))
        .where(c.latest == 1, c.fallback.is_(False), c.qa.is_(False), c.team.in_(arms))
        .group_by(c.user_id, c.team)
    )
    users = conn.execute(select(e.user_id).where(cond).distinct().order_by(e.user_id)).scalars()
    user_ids = np.fromiter(users, dtype=np.int64)
    index = {int(u): k for k, u in enumerate(user_ids)}
    out = {arm: np.zeros(user_ids.size) for arm in arms}
    for user_id, team, likes in conn.execute(credited):
        out[team][index[int(user_id)]] = likes
    return Credits(user_ids, out[arms[0]], out[arms[1]])


def team_counts(
    conn: Connection, experiment: str, version: str, arms: tuple[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    """Posts each arm contributed at each rank, over the merged (non-fallback) exposures and
    complete rounds only: ranks 2k and 2k+1 are one round of team draft, one pick per team in
    a coin-drawn order, so each rank is balanced only where its round is whole. A round cut
    short (the list ended after its first pick, because `limit` was reached or a team ran out
    of posts) is left out: when a team runs out, which team picked first decides whether the
    round is cut, so its lone pick leans to one team by design, not by a fault."""
    e, i = exposures.c, exposure_items.c
    q = (
        select(i.position, i.team, func.count())
        .select_from(exposure_items.join(exposures, e.request_id == i.request_id))
        .where(
            _phase(experiment, version),
            e.fallback.is_(False),
            i.team.in_(arms),
            (i.position // 2) * 2 + 1 < e.n_posts,
        )
        .group_by(i.position, i.team)
    )
    rows = conn.execute(q).all()
    size = 1 + max((r[0] for r in rows), default=-1)
    counts = {arm: np.zeros(size, dtype=np.int64) for arm in arms}
    for position, team, n in rows:
        counts[team][position] = n
    return counts[arms[0]], counts[arms[1]]


def verdict(pref: Preference, arms: tuple[str, str], balance_ok: bool, alpha: float) -> dict:
    """Status and one sentence, like the A/B verdict: an imbalance makes the phase invalid."""
    control, test = arms
    low, high = pref.delta_ci_low, pref.delta_ci_high
    ci = f"Δ = {pref.delta:+.3f} likes/user (95% CI {low:+.3f} … {high:+.3f})"
    share = f"{pref.share:.1%} of users with a winner prefer {test}"
    if not balance_ok:
        status, text = "invalid", "team balance per rank is off: the merge or the log is broken"
    elif pref.winner == "test":
        status, text = "win", f"users prefer {test}: {ci}, {share}"
    elif pref.winner == "control":
        status, text = "loss", f"users prefer {control}: {ci}, {share}"
    else:
        status, text = "inconclusive", f"no significant preference: {ci}, {share}"
    basis = (
        f"t-test on per-user Δ, p = {pref.t_p:.3g}; sign test p = {pref.sign_p:.3g}; α = {alpha}"
    )
    return {"status": status, "text": text, "basis": basis, "p": pref.t_p}


def analyze_interleaving(
    engine: Engine,
    experiment: str,
    phase: str | None = None,
    *,
    window_s: float = 3600.0,
    alpha: float = 0.05,
    n_boot: int = 1000,
    power: float = 0.8,
) -> dict:
    """The interleaving report of every phase of `experiment` (or only `phase`)."""
    with engine.connect() as conn:
        phases = list_phases(conn, experiment, exp_group=INTERLEAVED_GROUP)
        if phase is not None:
            phases = [p for p in phases if p.config_version == phase]
        if not phases:
            raise LookupError(f"experiment: no interleaved exposures logged for {experiment!r}")
        results = [
            _phase_report(conn, experiment, p, window_s, alpha, n_boot, power) for p in phases
        ]
    return {
        "experiment": experiment,
        "design": DESIGN,
        "generated_at": utcnow().replace(microsecond=0).isoformat(),
        "window_s": window_s,
        "alpha": alpha,
        "phases": results,
    }


def _phase_report(
    conn: Connection,
    experiment: str,
    phase: PhaseSpan,
    window_s: float,
    alpha: float,
    n_boot: int,
    power: float,
) -> dict:
    version = phase.config_version
    arms = arm_names(conn, experiment, version)
    credits = user_credits(conn, experiment, version, arms, window_s)
    pref = preference(credits.control, credits.test, alpha=alpha, n_boot=n_boot)
    balance = position_balance(*team_counts(conn, experiment, version, arms))
    balance_ok = not any(b.flagged for b in balance)
    planned = None
    if pref.delta and pref.delta_sd > 0:
        planned = users_needed(pref.delta_sd, pref.delta, alpha, power)
    return {
        "config_version": version,
        "start": _iso(phase.start),
        "end": _iso(phase.end),
        "exposures": phase.exposures,
        "fallbacks": phase.fallbacks,
        "fallback_rate": phase.fallbacks / phase.exposures,
        "qa_exposures_excluded": phase.qa_exposures,
        "control": arms[0],
        "test": arms[1],
        "credited_likes": {arms[0]: int(credits.control.sum()), arms[1]: int(credits.test.sum())},
        "preference": pref.as_dict(),
        "verdict": verdict(pref, arms, balance_ok, alpha),
        "balance": [b.as_dict() for b in balance],
        "balance_flagged": not balance_ok,
        "users_needed_for_observed_delta": planned,
        "power": power,
    }


def _iso(value: datetime | str) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def plan_interleaving(
    url: str | None,
    pilot: str | None,
    delta_sd: float | None,
    delta: float | None,
    alpha: float = 0.05,
    power: float = 0.8,
    daily_users: float | None = None,
) -> dict:
    """Users an interleaving experiment needs: from a pilot experiment's per-user Δ (its sd,
    and its mean unless `delta` is given), or from `delta_sd` and `delta` directly."""
    pilot_users = None
    if pilot is not None:
        from feedlab.storage.engine import make_engine

        from feedlab.settings import database_url

        engine = make_engine(database_url(url))
        try:
            report = analyze_interleaving(engine, pilot, alpha=alpha, n_boot=50)
        finally:
            engine.dispose()
        pref = report["phases"][-1]["preference"]
        delta_sd, pilot_users = pref["delta_sd"], pref["users"]
        delta = pref["delta"] if delta is None else delta
    if delta_sd is None:
        raise ValueError("--pilot EXPERIMENT or --sd (per-user sd of Δ) is required")
    if delta is None:
        raise ValueError("--delta (likes per user to detect) is required without --pilot")
    users = users_needed(delta_sd, delta, alpha, power)
    return {
        "design": DESIGN,
        "pilot": pilot,
        "pilot_users": pilot_users,
        "delta": delta,
        "delta_sd": delta_sd,
        "alpha": alpha,
        "power": power,
        "users": users,
        "days": users / daily_users if daily_users else None,
    }
