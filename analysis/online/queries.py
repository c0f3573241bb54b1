"""SQL for the online analysis (SQLAlchemy Core, identical on SQLite and PostgreSQL).

The database does the heavy work in three steps, each materialised in a temporary table of
the caller's connection:
1. `ud`: one row per (arm, user, day) with exposures, posts served, hit exposures and liked
   served posts. A served post is liked when the user liked it in [ts, ts + window) after the
   exposure; the join starts from likes (few) and probes exposure_items by (user_id, post_id).
2. `pu`: one row per (arm, user) with the per-user metrics and their pre-period values
   (same metrics over the same users' exposures in the window of equal length before the
   phase start, any experiment), the CUPED covariates.
3. Per-arm sufficient statistics, mid-rank sums for Mann-Whitney, daily increments for the
   cumulative effect, exposure-level guardrails: small result sets read by analysis.stats.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from feedlab.analysis.online.sqlfuncs import add_seconds, day_of, json_length
from feedlab.storage.schema import LIKE, exposure_items, exposures, feed
from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    Float,
    FromClause,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    and_,
    case,
    cast,
    distinct,
    func,
    literal,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.exc import DBAPIError


@dataclass(frozen=True)
class Selection:
    """Which exposures form the analysed sample: one experiment, one or more config versions
    (more than one only when pooling was explicitly allowed), an optional time range."""

    experiment: str
    versions: tuple[str, ...]
    since: datetime | None = None
    until: datetime | None = None

    def condition(self) -> ColumnElement[bool]:
        e = exposures.c
        cond = and_(e.experiment == self.experiment, e.config_version.in_(self.versions))
        if self.since is not None:
            cond = and_(cond, e.ts >= self.since)
        if self.until is not None:
            cond = and_(cond, e.ts < self.until)
        return cond


def _f(x: ColumnElement) -> ColumnElement:
    return cast(x, Float)


def list_phases(conn: Connection, experiment: str, since=None, until=None) -> list[dict]:
    """Config versions seen for the experiment, in order of first exposure."""
    e = exposures.c
    cond = e.experiment == experiment
    if since is not None:
        cond = and_(cond, e.ts >= since)
    if until is not None:
        cond = and_(cond, e.ts < until)
    q = (
        select(
            e.config_version,
            func.min(e.ts).label("start"),
            func.max(e.ts).label("end"),
            func.count().label("exposures"),
        )
        .where(cond)
        .group_by(e.config_version)
        .order_by(func.min(e.ts))
    )
    return [dict(r._mapping) for r in conn.execute(q)]


def likes_on_served() -> FromClause:
    """Likes joined to the served posts of the same user and post, and their exposures: the
    join starts from likes (few) and probes exposure_items by (user_id, post_id, ts)."""
    e, i, f = exposures.c, exposure_items.c, feed.c
    return feed.join(exposure_items, and_(i.user_id == f.user_id, i.post_id == f.post_id)).join(
        exposures, e.request_id == i.request_id
    )


def liked_within(lo: datetime, hi: datetime, window_s: float) -> list[ColumnElement[bool]]:
    """Conditions on `likes_on_served()`: a like in [ts, ts + window) after a post served
    between lo and hi (the bounds on the like's time let the database skip older likes)."""
    i, f = exposure_items.c, feed.c
    return [
        f.action == LIKE,
        f.timestamp >= lo,
        f.timestamp < hi + timedelta(seconds=window_s),
        f.timestamp >= i.ts,
        f.timestamp < add_seconds(i.ts, literal(window_s)),
    ]


def _exposure_sums(
    cond: ColumnElement[bool],
    keys: Sequence[ColumnElement],
    lo: datetime,
    hi: datetime,
    window_s: float,
) -> Select:
    """Per-key sums over the exposures matching `cond` (served in [lo, hi]): exposures, posts
    served, hit exposures and liked served posts (the user liked it in [ts, ts + window)).

    One hash aggregate over the exposures (one row each) UNION ALL the few liked exposures.
    Those start from the likes in the span, probe exposure_items(user_id, post_id, ts) and
    look the exposure up by primary key: a few hundred thousand index lookups at 10M
    exposures, where joining every exposure to the liked ones would probe all 10M."""
    e, i = exposures.c, exposure_items.c
    named = [k.label(f"k{n}") for n, k in enumerate(keys)]
    zero = literal(0)
    served = select(
        *named,
        literal(1).label("n_exp"),
        json_length(e.post_ids).label("n_items"),
        zero.label("hits"),
        zero.label("liked"),
    ).where(cond)
    liked = (
        select(*named, zero, zero, literal(1), func.count(distinct(i.position)))
        .select_from(likes_on_served())
        .where(cond, i.ts >= lo, i.ts <= hi, *liked_within(lo, hi, window_s))
        .group_by(e.request_id, *keys)
    )
    rows = union_all(served, liked).subquery("rows")
    group = [rows.c[f"k{n}"] for n in range(len(keys))]
    return select(
        *group, *[func.sum(rows.c[c]).label(c) for c in ("n_exp", "n_items", "hits", "liked")]
    ).group_by(*group)


def tune_session(conn: Connection, work_mem: str = "512MB", temp_buffers: str = "1GB") -> None:
    """PostgreSQL only: larger work_mem and temp_buffers for this session, so the few big
    sorts, hash aggregates and temporary tables of an analysis stay in memory instead of
    spilling to disk (temp_buffers must be set before the session's first temporary table).

    Memoize is off: the only nested loop probes exposure_items once per like, keyed by the
    like's (user, post, timestamp), which never repeats, so a cache would only cost time
    (about 1 s CPU per 400k likes)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT set_config('work_mem', :v, false)"), {"v": work_mem})
        conn.execute(text("SELECT set_config('temp_buffers', :v, false)"), {"v": temp_buffers})
        conn.execute(text("SELECT set_config('enable_memoize', 'off', false)"))


def refresh_planner_stats(conn: Connection) -> None:
    """PostgreSQL only: ANALYZE the source tables whose statistics are stale (over 10% of
    rows changed since the last analyze, e.g. right after a bulk load, before autovacuum got
    to them). With stale stats the planner expects one row and picks nested loops that turn
    a one-second join into minutes; ANALYZE samples a fixed 30k rows, so it stays cheap."""
    if conn.dialect.name != "postgresql":
        return
    stale = conn.execute(
        text(
            "SELECT relname FROM pg_stat_user_tables WHERE relname IN "
            "('exposures', 'exposure_items', 'feed') AND schemaname = current_schema() "
            "AND (last_analyze IS NULL AND last_autoanalyze IS NULL "
            "OR n_mod_since_analyze > 0.1 * GREATEST(n_live_tup, 1))"
        )
    ).scalars()
    for table in stale:
        try:
            with conn.begin_nested():
                conn.execute(text(f'ANALYZE "{table}"'))
        except DBAPIError:  # not the owner: keep going with the stats there are
            continue


def _analyze_temp(conn: Connection, table: Table) -> None:
    """Temporary tables are never auto-analyzed; give the planner their real size."""
    if conn.dialect.name == "postgresql":
        conn.execute(text(f'ANALYZE "{table.name}"'))


class Workspace:
    """Temporary per-user tables of one analysis on one connection (dropped on close)."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.meta = MetaData()
        tag = uuid.uuid4().hex[:8]
        # int4 counts per user-day: PostgreSQL sums int4 into bigint, but bigint into NUMERIC
        counts = [Column(c, Integer) for c in ("n_exp", "n_items", "hits", "liked")]
        self.ud = Table(
            f"fl_ud_{tag}",
            self.meta,
            Column("exp_group", String(64)),
            Column("user_id", BigInteger),
            Column("day", Integer),
            *counts,
            prefixes=["TEMPORARY"],
        )
        self.pre = Table(
            f"fl_pre_{tag}",
            self.meta,
            Column("user_id", BigInteger),
            *[Column(c.name, BigInteger) for c in counts],
            prefixes=["TEMPORARY"],
        )
        self.pu = Table(
            f"fl_pu_{tag}",
            self.meta,
            Column("exp_group", String(64)),
            Column("user_id", BigInteger),
            *[Column(c.name, BigInteger) for c in counts],
            Column("hr", Float),
            Column("lr", Float),
            Column("conv", Integer),
            Column("pre_hr", Float),
            Column("pre_lr", Float),
            Column("pre_liked", Float),
            prefixes=["TEMPORARY"],
        )

    def close(self) -> None:
        self.meta.drop_all(self.conn, checkfirst=True)

    def build(
        self,
        sel: Selection,
        lo: datetime,
        hi: datetime,
        window_s: float,
        pre: tuple[datetime, datetime] | None,
    ) -> None:
        """Fill `ud` and `pu` for the selection; lo/hi bound its exposure timestamps."""
        self.meta.create_all(self.conn)
        e = exposures.c
        keys = [e.exp_group, e.user_id, day_of(e.ts)]
        self._fill(self.ud, _exposure_sums(sel.condition(), keys, lo, hi, window_s))

        u = self.ud.c
        agg = (
            select(
                u.exp_group,
                u.user_id,
                *[func.sum(u[c]).label(c) for c in ("n_exp", "n_items", "hits", "liked")],
            )
            .group_by(u.exp_group, u.user_id)
            .subquery("agg")
        )
        if pre is not None:
            # every user's pre-period sums: the left join below keeps the experiment's users,
            # which is cheaper than filtering the scan on them
            pre_cond = and_(e.ts >= pre[0], e.ts < pre[1])
            self._fill(self.pre, _exposure_sums(pre_cond, [e.user_id], *pre, window_s))
            pre_q = self.pre
            src = agg.outerjoin(pre_q, pre_q.c.user_id == agg.c.user_id)
            pre_hr = case((pre_q.c.n_exp > 0, _f(pre_q.c.hits) / pre_q.c.n_exp), else_=0.0)
            pre_lr = case((pre_q.c.n_items > 0, _f(pre_q.c.liked) / pre_q.c.n_items), else_=0.0)
            pre_liked = _f(func.coalesce(pre_q.c.liked, 0))
        else:
            src = agg
            pre_hr = pre_lr = pre_liked = literal(0.0, Float)
        a = agg.c
        pu_q = select(
            a.exp_group,
            a.user_id,
            a.n_exp,
            a.n_items,
            a.hits,
            a.liked,
            _f(a.hits) / a.n_exp,
            case((a.n_items > 0, _f(a.liked) / a.n_items), else_=0.0),
            case((a.hits > 0, 1), else_=0),
            pre_hr,
            pre_lr,
            pre_liked,
        ).select_from(src)
        self._fill(self.pu, pu_q)

    def _fill(self, table: Table, query: Select) -> None:
        self.conn.execute(table.insert().from_select([c.name for c in table.c], query))
        _analyze_temp(self.conn, table)

    # -- per-arm sufficient statistics -------------------------------------------------

    def arm_sums(self) -> dict[str, dict[str, float]]:
        """Per arm: n users and the sums, squares and cross-products every test needs."""
        p = self.pu.c
        cols = {
            "n": func.count(),
            "conv": func.sum(p.conv),
            "liked": func.sum(_f(p.liked)),
            "liked_sq": func.sum(_f(p.liked) * p.liked),
            "items_f": func.sum(_f(p.n_items)),
            "items_sq": func.sum(_f(p.n_items) * p.n_items),
            "liked_items": func.sum(_f(p.liked) * p.n_items),
        }
        for m, x in (("hr", p.pre_hr), ("lr", p.pre_lr), ("liked", p.pre_liked)):
            y = _f(p[m])
            if m != "liked":
                cols[m] = func.sum(y)
                cols[f"{m}_sq"] = func.sum(y * y)
            cols[f"{m}_pre"] = func.sum(x)
            cols[f"{m}_pre_sq"] = func.sum(x * x)
            cols[f"{m}_x_pre"] = func.sum(y * x)
        q = select(p.exp_group, *[c.label(k) for k, c in cols.items()]).group_by(p.exp_group)
        out = {}
        for row in self.conn.execute(q):
            d = dict(row._mapping)
            group = d.pop("exp_group")
            out[group] = {k: float(v or 0) for k, v in d.items()}
        return out

    def users_in_several_arms(self) -> int:
        p = self.pu.c
        sub = (
            select(p.user_id).group_by(p.user_id).having(func.count(distinct(p.exp_group)) > 1)
        ).subquery()
        return int(self.conn.execute(select(func.count()).select_from(sub)).scalar_one())

    def rank_sums(self, column: str, control: str, arm: str) -> tuple[float, float]:
        """Mann-Whitney inputs without moving per-user values: the mid-rank sum of `control`
        in the pooled (control, arm) sample, and the tie term sum(t^3 - t)."""
        p = self.pu.c
        v = p[column]
        pair = p.exp_group.in_([control, arm])
        ranked = select(
            p.exp_group,
            (
                _f(func.rank().over(order_by=v)) + (_f(func.count().over(partition_by=v)) - 1) / 2.0
            ).label("r"),
        ).where(pair)
        ranked = ranked.subquery()
        rank_sum = self.conn.execute(
            select(func.sum(ranked.c.r)).where(ranked.c.exp_group == control)
        ).scalar_one()
        ties = select(_f(func.count()).label("t")).where(pair).group_by(v).subquery()
        tie_term = self.conn.execute(
            select(func.sum(ties.c.t * ties.c.t * ties.c.t - ties.c.t))
        ).scalar_one()
        return float(rank_sum or 0), float(tie_term or 0)

    def bucket_sums(self, arm: str, buckets: int) -> list[tuple]:
        """Per user bucket (user_id mod `buckets`) of one arm: users and the sums of hr, lr,
        liked and n_items. Users are independent, so the bucket sums are too, and a Poisson
        bootstrap over buckets estimates the same sampling distribution as one over users
        (exactly the per-user bootstrap while users <= buckets) at a cost that does not grow
        with the number of users."""
        p = self.pu.c
        b = (p.user_id % buckets).label("b")
        q = (
            select(
                func.count(),
                func.sum(p.hr),
                func.sum(p.lr),
                func.sum(_f(p.liked)),
                func.sum(_f(p.n_items)),
            )
            .where(p.exp_group == arm)
            .group_by(b)
            .order_by(b)
        )
        return [tuple(row) for row in self.conn.execute(q)]

    def daily_increments(self, moments: dict[str, Callable[[dict], ColumnElement]]) -> list[dict]:
        """Per (arm, day): the increments of each per-user moment when the user's cumulative
        sums move from their previous active day to this one; summed over days in Python
        they give the sufficient statistics of the experiment as it stood at each day's end."""
        u = self.ud.c
        sums = ("n_exp", "n_items", "hits", "liked")
        # user_id first: the sort then rarely compares the (collation-aware) arm names
        w = {"partition_by": [u.user_id, u.exp_group], "order_by": u.day, "rows": (None, 0)}
        cum = select(
            u.exp_group,
            u.day,
            *[u[c] for c in sums],
            # float sums: exact for counts below 2**53, and PostgreSQL's sum(bigint) would
            # otherwise be NUMERIC, making every moment expression below slow decimal math
            *[func.sum(_f(u[c])).over(**w).label(f"cum_{c}") for c in sums],
        ).subquery("cum")
        g = cum.c
        # one window pass: the previous cumulative sums are the current ones minus this day
        cur = {s: g[f"cum_{s}"] for s in sums}
        prev = {s: g[f"cum_{s}"] - g[s] for s in sums}
        first = g.cum_n_exp == g.n_exp
        cols = [func.sum(case((first, 1), else_=0)).label("n")]
        for name, expr in moments.items():
            d = expr(cur) - case((first, 0.0), else_=expr(prev))
            cols.append(func.sum(d).label(name))
        q = (
            select(g.exp_group, g.day, *cols)
            .group_by(g.exp_group, g.day)
            .order_by(g.day, g.exp_group)
        )
        return [dict(r._mapping) for r in self.conn.execute(q)]


def guardrails(
    conn: Connection, sel: Selection, arms: Sequence[str]
) -> dict[str, dict[str, float | None]]:
    """Exposure-level guardrails per arm: count, fallback rate (the gateway's error signal:
    a failed arm model is served a fallback list), latency mean and nearest-rank p50/p95
    (the ceil(p * n)-th smallest latency).

    PostgreSQL computes it in one scan with percentile_disc (exactly nearest-rank), each
    aggregate filtered to one arm: grouping by arm would first sort every exposure by arm
    name, then each arm's latencies again. SQLite has no ordered-set aggregates, so there the
    ranks come from window functions."""
    e = exposures.c
    cond = sel.condition()
    lat = e.latency_ms
    common = {
        "n": func.count(),
        "fb": func.sum(case((e.fallback, 1), else_=0)),
        "lat": func.avg(lat),
    }
    if conn.dialect.name == "postgresql":
        aggs = common | {
            "p50": func.percentile_disc(0.5).within_group(lat),
            "p95": func.percentile_disc(0.95).within_group(lat),
        }
        cols = [
            agg.filter(e.exp_group == arm).label(f"{name}_{n}")
            for n, arm in enumerate(arms)
            for name, agg in aggs.items()
        ]
        row = conn.execute(select(*cols).where(cond)).one()._mapping
        rows = [
            {"exp_group": arm} | {name: row[f"{name}_{n}"] for name in aggs}
            for n, arm in enumerate(arms)
        ]
    else:
        q = select(e.exp_group, *[agg.label(name) for name, agg in common.items()])
        rows = [dict(r._mapping) for r in conn.execute(q.where(cond).group_by(e.exp_group))]
        pct = {g: (p50, p95) for g, p50, p95 in _ranked_percentiles(conn, cond)}
        for r in rows:
            r["p50"], r["p95"] = pct.get(r["exp_group"], (None, None))
    return {
        r["exp_group"]: {
            "exposures": int(r["n"]),
            "fallback_rate": float(r["fb"] or 0) / r["n"],
            "latency_mean_ms": None if r["lat"] is None else float(r["lat"]),
            "latency_p50_ms": None if r["p50"] is None else float(r["p50"]),
            "latency_p95_ms": None if r["p95"] is None else float(r["p95"]),
        }
        for r in rows
    }


def _ranked_percentiles(conn: Connection, cond: ColumnElement[bool]) -> list[tuple]:
    """(arm, p50, p95) by nearest rank with window functions (portable; used on SQLite)."""
    e = exposures.c
    lat = e.latency_ms
    ranked = (
        select(
            e.exp_group,
            lat,
            func.row_number().over(partition_by=e.exp_group, order_by=lat).label("rn"),
            func.count().over(partition_by=e.exp_group).label("cnt"),
        )
        .where(cond, lat.is_not(None))
        .subquery()
    )
    r = ranked.c
    p50 = (r.cnt * 50 + 99) // 100
    p95 = (r.cnt * 95 + 99) // 100
    q = (
        select(
            r.exp_group,
            func.max(case((r.rn == p50, r.latency_ms))),
            func.max(case((r.rn == p95, r.latency_ms))),
        )
        .where(or_(r.rn == p50, r.rn == p95))
        .group_by(r.exp_group)
    )
    return [tuple(row) for row in conn.execute(q)]
