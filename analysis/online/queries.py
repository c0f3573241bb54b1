"""SQL for the online analysis (SQLAlchemy Core, identical on SQLite and PostgreSQL).

The database does the heavy work, each step materialised in a temporary table of the caller's
connection:
1. `cr`: the credited likes. Each like is credited once, to the latest non-QA exposure that
   served that post to that user at or before the like, if that exposure is less than the
   attribution window before it: one row per credited (exposure, post) with its first like.
2. `ud`: one row per (arm, user, day) with exposures, posts served, hit exposures and liked
   served posts by the exposure's day, and one row per credited post on the day its first
   like became known (the looks of the sequential test see only those), each with the user's
   running sums up to it: one pass over the sample's exposures grouped by user-day, joined
   to the few credited ones, and one sort by user and day for the running sums.
3. `pu`: one row per (arm, user) from the user's last day in `ud`, with the per-user metrics
   and the CUPED covariates: the same metrics over the user's exposures in the pre-period
   (which ends at the experiment's first exposure) and whether the user has any.
4. Per-arm sufficient statistics, mid-rank sums for Mann-Whitney, per-day sums, exposure-level
   guardrails: small typed results read by analysis.stats.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from feedlab.analysis.online.results import ArmSums, BucketSums, CovariateSums, Guardrail, LookSums
from feedlab.analysis.online.sqlfuncs import add_seconds, day_of
from feedlab.storage.schema import LIKE, exposure_items, exposures, feed
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Connection,
    DateTime,
    Float,
    FromClause,
    Integer,
    MetaData,
    Select,
    String,
    Subquery,
    Table,
    and_,
    case,
    cast,
    delete,
    distinct,
    func,
    literal,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.exc import DBAPIError

COUNTS = ("n_exp", "n_items", "hits", "liked")
SEEN = ("hits_seen", "liked_seen")
RUNNING = ("n_exp", "n_items", *SEEN)
"""The per-user-day counts kept as running sums over the user's days: the looks read each
user's state at each day's end from them, and the per-user totals from the user's last day
(by then every credited like is known: its day is clamped to the last look's)."""
CARRIED = ("experiment", "config_version", "qa", "exp_group", "user_id", "ts")
"""Exposure columns copied onto each credited like, so later steps never go back to the
exposures table for the few liked exposures (a hash join there would scan all of them)."""
CAPPED = ("hr", "lr", "liked")
"""Per-user columns `--cap` winsorizes (the ratio metric's denominator, posts served, is not:
the system decides it, not the user)."""


@dataclass(frozen=True)
class Selection:
    """Which exposures form the analysed sample: one experiment, one or more config versions
    (more than one only when pooling was explicitly allowed), an optional time range. QA
    exposures are never part of it."""

    experiment: str
    versions: tuple[str, ...]
    since: datetime | None = None
    until: datetime | None = None
    active_until: datetime | None = None
    """When the experiment's next config (or segment) started: this phase's exposures from
    then on were served outside its active time (e.g. by a worker still on the old config)
    and are left out of the sample."""

    def condition(
        self, qa: bool = False, late: bool = False, on: FromClause = exposures
    ) -> ColumnElement[bool]:
        """The sample, or its QA exposures, or (late) its exposures outside active time; `on`
        a table with the exposures' columns (the credited likes carry them)."""
        e = on.c
        cond = and_(
            e.experiment == self.experiment,
            e.config_version.in_(self.versions),
            e.qa.is_(True) if qa else e.qa.is_(False),
        )
        if self.active_until is not None:
            cond = and_(cond, e.ts >= self.active_until if late else e.ts < self.active_until)
        return _range(cond, self.since, self.until, on)


@dataclass(frozen=True)
class PhaseSpan:
    """One config version's analysed exposures (QA excluded) inside the range."""

    config_version: str
    start: datetime
    end: datetime
    exposures: int
    qa_exposures: int
    fallbacks: int


def sample_span(conn: Connection, sel: Selection) -> tuple[datetime, datetime, int]:
    """First and last exposure of the sample, and how many exposures it has."""
    e = exposures.c
    q = select(func.min(e.ts), func.max(e.ts), func.count()).where(sel.condition())
    lo, hi, n = conn.execute(q).one()
    return lo, hi, int(n)


def _f(x: ColumnElement) -> ColumnElement:
    return cast(x, Float)


def _range(
    cond: ColumnElement[bool],
    since: datetime | None,
    until: datetime | None,
    on: FromClause = exposures,
) -> ColumnElement[bool]:
    e = on.c
    if since is not None:
        cond = and_(cond, e.ts >= since)
    if until is not None:
        cond = and_(cond, e.ts < until)
    return cond


def list_phases(
    conn: Connection,
    experiment: str,
    since: datetime | None = None,
    until: datetime | None = None,
    exp_group: str | None = None,
) -> list[PhaseSpan]:
    """Config versions seen for the experiment (non-QA exposures; only `exp_group`'s when
    given), in order of first exposure, with their QA exposures counted in the same scan."""
    e = exposures.c
    cond = _range(e.experiment == experiment, since, until)
    if exp_group is not None:
        cond = and_(cond, e.exp_group == exp_group)
    real = e.qa.is_(False)
    q = (
        select(
            e.config_version,
            func.min(case((real, e.ts))),
            func.max(case((real, e.ts))),
            func.sum(case((real, 1), else_=0)),
            func.sum(case((real, 0), else_=1)),
            func.sum(case((and_(real, e.fallback), 1), else_=0)),
        )
        .where(cond)
        .group_by(e.config_version)
        .order_by(func.min(case((real, e.ts))))
    )
    return [
        PhaseSpan(v, lo, hi, int(n), int(qa), int(fb))
        for v, lo, hi, n, qa, fb in conn.execute(q)
        if n
    ]


def segment_starts(
    conn: Connection,
    experiment: str,
    version: str,
    returns: Sequence[datetime],
    since: datetime | None,
    until: datetime | None,
) -> list[datetime]:
    """For each moment another config stopped running (`returns`), the first exposure of
    `version` after it: where the version came back, i.e. a new segment starts."""
    e = exposures.c
    cond = _range(
        and_(e.experiment == experiment, e.config_version == version, e.qa.is_(False)),
        since,
        until,
    )
    starts: list[datetime] = []
    for moment in returns:
        ts = conn.execute(select(func.min(e.ts)).where(cond, e.ts > moment)).scalar_one()
        if ts is not None and (not starts or ts > starts[-1]):
            starts.append(ts)
    return starts


def first_exposure(conn: Connection, experiment: str) -> datetime | None:
    """The experiment's first analysed exposure in any phase (range ignored): the pre-period
    for CUPED ends here, so it never contains an analysed exposure of the experiment (QA
    exposures are never analysed, so they move nothing)."""
    e = exposures.c
    cond = and_(e.experiment == experiment, e.qa.is_(False))
    return conn.execute(select(func.min(e.ts)).where(cond)).scalar_one()


def count_exposures(conn: Connection, cond: ColumnElement[bool]) -> int:
    return int(conn.execute(select(func.count()).where(cond)).scalar_one())


def carried_over(experiment: str, earlier: Sequence[str], before: datetime) -> Select:
    """Users with an exposure of `experiment` under one of the `earlier` versions (a
    different split) before `before`."""
    e = exposures.c
    return select(e.user_id).where(
        e.experiment == experiment, e.config_version.in_(list(earlier)), e.ts < before
    )


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


def _credited(
    like_lo: datetime, like_hi: datetime, window_s: float, exposure_lo: datetime
) -> Select:
    """Credited (request_id, post_id, first like, first) for the likes in [like_lo, like_hi);
    `first` is 1 on the one credited post of each exposure whose first like came earliest,
    so a hit is counted once per exposure, on the day it became known, without grouping.

    Starts from the likes (few), probes exposure_items(user_id, post_id, ts) for the served
    items in the window before each like, keeps the latest (ties: the larger request id) and
    only then drops QA exposures, so a QA request that re-served a post takes its credit
    away from the analysis rather than handing it to an older exposure."""
    e, i, f = exposures.c, exposure_items.c, feed.c
    ranked = (
        select(
            i.request_id,
            i.post_id,
            f.timestamp.label("like_ts"),
            func.row_number()
            .over(partition_by=f.id, order_by=(i.ts.desc(), i.request_id.desc()))
            .label("rn"),
        )
        .select_from(
            feed.join(exposure_items, and_(i.user_id == f.user_id, i.post_id == f.post_id))
        )
        .where(
            f.action == LIKE,
            f.timestamp >= like_lo,
            f.timestamp < like_hi,
            i.ts >= exposure_lo,
            i.ts <= f.timestamp,
            add_seconds(i.ts, literal(window_s)) > f.timestamp,
        )
        .subquery("ranked")
    )
    r = ranked.c
    first_like = func.min(r.like_ts)
    latest = (
        select(
            r.request_id,
            r.post_id,
            first_like.label("first_like"),
            func.row_number()
            .over(partition_by=r.request_id, order_by=(first_like, r.post_id))
            .label("nth"),
        )
        .where(r.rn == 1)
        .group_by(r.request_id, r.post_id)
        .subquery("latest")
    )
    c = latest.c
    return (
        select(
            c.request_id,
            c.post_id,
            c.first_like,
            case((c.nth == 1, 1), else_=0),
            *(e[col] for col in CARRIED),
        )
        .select_from(latest.join(exposures, e.request_id == c.request_id))
        .where(e.qa.is_(False))
    )


def tune_session(conn: Connection, work_mem: str = "512MB", temp_buffers: str = "1GB") -> None:
    """PostgreSQL only: larger work_mem and temp_buffers for this session, so the few big
    sorts, hash aggregates and temporary tables of an analysis stay in memory instead of
    spilling to disk (temp_buffers must be set before the session's first temporary table).

    Memoize is off: the only nested loop probes exposure_items once per like, keyed by the
    like's (user, post, timestamp), which never repeats, so a cache would only cost time."""
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


def _temp(meta: MetaData, name: str, *columns: Column) -> Table:
    return Table(f"fl_{name}_{uuid.uuid4().hex[:8]}", meta, *columns, prefixes=["TEMPORARY"])


def _credited_columns() -> list[Column]:
    return [
        Column("request_id", String(36)),
        Column("post_id", BigInteger),
        Column("first_like", DateTime),
        Column("first", Integer),
        Column("experiment", String(128)),
        Column("config_version", String(64)),
        Column("qa", Boolean),
        Column("exp_group", String(64)),
        Column("user_id", BigInteger),
        Column("ts", DateTime),
    ]


def _by_user_day(
    table: Table, cond: ColumnElement[bool], name: str, **sums: ColumnElement
) -> Subquery:
    """`sums` over the rows of `table` (exposures, or credited likes that carry their
    exposure's columns) meeting `cond`, per (user, arm, day of the exposure)."""
    t = table.c
    day = day_of(t.ts)
    return (
        select(t.user_id, t.exp_group, day.label("day"), *(v.label(k) for k, v in sums.items()))
        .where(cond)
        .group_by(t.user_id, t.exp_group, day)
        .subquery(name)
    )


def _clamped_day(ts: ColumnElement, last_day: int) -> ColumnElement:
    """The day a like became known, the last look's day at most (that look also sees likes
    arriving within the attribution window after the last exposure)."""
    return case((day_of(ts) > last_day, literal(last_day)), else_=day_of(ts))


class Workspace:
    """Temporary tables of one analysis on one connection (dropped on close)."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.meta = MetaData()
        # int4 counts per user-day: PostgreSQL sums int4 into bigint, but bigint into NUMERIC
        counts = [Column(c, Integer) for c in (*COUNTS, *SEEN)]
        self.cr = _temp(self.meta, "cr", *_credited_columns())
        self.pre_cr = _temp(self.meta, "pcr", *_credited_columns())
        self.ud = _temp(
            self.meta,
            "ud",
            Column("exp_group", String(64)),
            Column("user_id", BigInteger),
            Column("day", Integer),
            *counts,
            *[Column(f"cum_{c}", BigInteger) for c in RUNNING],
            Column("last", Integer),
        )
        self.pre = _temp(
            self.meta,
            "pre",
            Column("user_id", BigInteger),
            *[Column(c, BigInteger) for c in COUNTS],
        )
        self.pu = _temp(
            self.meta,
            "pu",
            Column("exp_group", String(64)),
            Column("user_id", BigInteger),
            *[Column(c, BigInteger) for c in COUNTS],
            Column("hr", Float),
            Column("lr", Float),
            Column("conv", Integer),
            Column("has_pre", Integer),
            Column("pre_hr", Float),
            Column("pre_lr", Float),
            Column("pre_liked", Float),
        )

    def close(self) -> None:
        self.meta.drop_all(self.conn, checkfirst=True)

    def _fill(self, table: Table, query: Select) -> None:
        self.conn.execute(table.insert().from_select([c.name for c in table.c], query))
        _analyze_temp(self.conn, table)

    def build_user_days(
        self, sel: Selection, lo: datetime, hi: datetime, window_s: float, last_day: int
    ) -> None:
        """Fill `cr` and `ud` for the selection; lo/hi bound its exposure timestamps."""
        self.meta.create_all(self.conn)
        w = timedelta(seconds=window_s)
        self._fill(self.cr, _credited(lo, hi + w, window_s, lo - w))
        e, c = exposures.c, self.cr.c
        zero, one = literal(0), literal(1)
        credited = sel.condition(on=self.cr)
        # int4 counts, so that the running sums below are bigint, never NUMERIC
        served = _by_user_day(
            exposures,
            sel.condition(),
            "served",
            n_exp=cast(func.count(), Integer),
            n_items=cast(func.sum(e.n_posts), Integer),
        )
        # hit exposures (one `first` post each) and liked posts by the exposure's day: a few
        # rows, joined to the user-days after the big grouping rather than unioned into it
        hit = _by_user_day(self.cr, credited, "hit", hits=func.sum(c.first), liked=func.count())
        s, h = served.c, hit.c
        user_days = select(
            s.user_id,
            s.exp_group,
            s.day,
            s.n_exp,
            s.n_items,
            cast(func.coalesce(h.hits, 0), Integer).label("hits"),
            cast(func.coalesce(h.liked, 0), Integer).label("liked"),
            *(zero.label(k) for k in SEEN),
        ).select_from(
            served.outerjoin(
                hit, and_(h.user_id == s.user_id, h.exp_group == s.exp_group, h.day == s.day)
            )
        )
        # each credited post again on the day its first like became known (the exposure's
        # hit with its `first` post)
        known = select(
            c.user_id,
            c.exp_group,
            _clamped_day(c.first_like, last_day),
            *(zero for _ in range(4)),
            c.first,
            one,
        ).where(credited)
        rows = union_all(user_days, known).subquery("rows")
        r = rows.c
        part = [r.user_id, r.exp_group]
        # a day's exposures before its known likes: running sums never divide by 0 exposures
        order = (r.day, r.n_exp.desc())
        running = [
            func.sum(r[k]).over(partition_by=part, order_by=order, rows=(None, 0)) for k in RUNNING
        ]
        last = func.lead(r.day).over(partition_by=part, order_by=order).is_(None)
        self._fill(
            self.ud,
            select(
                r.exp_group,
                r.user_id,
                r.day,
                *(r[k] for k in (*COUNTS, *SEEN)),
                *running,
                case((last, 1), else_=0),
            ),
        )

    def users_in(self, users: Select, drop: bool) -> int:
        """How many of the sample's users are in `users`; with `drop` they leave the sample
        (the per-user table and the per-user-day one the looks read). Counted on `pu`, one
        row per (arm, user), a fraction of `ud`'s rows."""
        p = self.pu.c
        n = self.conn.execute(
            select(func.count(distinct(p.user_id))).where(p.user_id.in_(users))
        ).scalar()
        if n and drop:
            # ud first: `users` may be a query over pu
            for table in (self.ud, self.pu):
                self.conn.execute(delete(table).where(table.c.user_id.in_(users)))
        return int(n or 0)

    def multi_arm_users(self) -> Select:
        """Users with rows in more than one arm."""
        p = self.pu.c
        return select(p.user_id).group_by(p.user_id).having(func.count() > 1)

    def build_users(self, window_s: float, pre: tuple[datetime, datetime] | None) -> None:
        """Fill `pu` from each user's last row of `ud` (its running sums are the user's
        totals), with the pre-period covariates when there is a pre-period."""
        u = self.ud.c
        agg = (
            select(
                u.exp_group,
                u.user_id,
                u.cum_n_exp.label("n_exp"),
                u.cum_n_items.label("n_items"),
                u.cum_hits_seen.label("hits"),
                u.cum_liked_seen.label("liked"),
            )
            .where(u.last == 1)
            .subquery("agg")
        )
        src: FromClause = agg
        has_pre: ColumnElement = literal(0)
        pre_hr: ColumnElement = literal(0.0, Float)
        pre_lr: ColumnElement = pre_hr
        pre_liked: ColumnElement = pre_hr
        if pre is not None:
            w = timedelta(seconds=window_s)
            self._fill(self.pre_cr, _credited(pre[0], pre[1], window_s, pre[0] - w))
            self._fill(self.pre, _exposure_sums(self.pre_cr, pre))
            q = self.pre.c
            src = agg.outerjoin(self.pre, q.user_id == agg.c.user_id)
            has = q.n_exp > 0
            has_pre = case((has, 1), else_=0)
            pre_hr = case((has, _f(q.hits) / _f(q.n_exp)), else_=0.0)
            pre_lr = case((q.n_items > 0, _f(q.liked) / _f(q.n_items)), else_=0.0)
            pre_liked = _f(func.coalesce(q.liked, 0))
        a = agg.c
        pu_q = select(
            a.exp_group,
            a.user_id,
            *(a[c] for c in COUNTS),
            _f(a.hits) / _f(a.n_exp),
            case((a.n_items > 0, _f(a.liked) / _f(a.n_items)), else_=0.0),
            case((a.hits > 0, 1), else_=0),
            has_pre,
            pre_hr,
            pre_lr,
            pre_liked,
        ).select_from(src)
        self._fill(self.pu, pu_q)

    def cap(self, quantile: float) -> tuple[dict[str, float], dict[str, int]]:
        """Winsorize each per-user column of CAPPED at its nearest-rank `quantile` over both
        arms; returns the caps and how many users each one cut."""
        p = self.pu.c
        n = int(self.conn.execute(select(func.count()).select_from(self.pu)).scalar_one())
        caps: dict[str, float] = {}
        cut: dict[str, int] = {}
        if n == 0:
            return caps, cut
        rank = max(math.ceil(quantile * n), 1)
        for col in CAPPED:
            value = self.conn.execute(
                select(p[col]).order_by(p[col]).limit(1).offset(rank - 1)
            ).scalar_one()
            over = p[col] > value
            cut[col] = int(self.conn.execute(select(func.count()).where(over)).scalar_one())
            caps[col] = float(value)
            self.conn.execute(update(self.pu).where(over).values({col: value}))
        return caps, cut

    # -- per-arm sufficient statistics -------------------------------------------------

    def arm_sums(self) -> dict[str, ArmSums]:
        """Per arm: n users and the sums, squares and cross-products every test needs."""
        p = self.pu.c
        d = _f(p.has_pre)
        cols: list[ColumnElement] = [
            func.count(),
            func.sum(d),
            func.sum(_f(p.conv)),
            func.sum(_f(p.n_items)),
            func.sum(_f(p.n_items) * p.n_items),
            func.sum(_f(p.liked) * p.n_items),
        ]
        for y, x in ((p.hr, p.pre_hr), (p.lr, p.pre_lr), (_f(p.liked), p.pre_liked)):
            y = _f(y)
            cols += [
                func.sum(y),
                func.sum(y * y),
                func.sum(x),
                func.sum(x * x),
                func.sum(x * d),
                func.sum(y * x),
                func.sum(y * d),
            ]
        out = {}
        for row in self.conn.execute(select(p.exp_group, *cols).group_by(p.exp_group)):
            v = [float(x or 0) for x in row[1:]]
            n, has_pre, conv, items, items_sq, liked_items = v[:6]
            out[row[0]] = ArmSums(
                n,
                has_pre,
                conv,
                items,
                items_sq,
                liked_items,
                CovariateSums(*v[6:13]),
                CovariateSums(*v[13:20]),
                CovariateSums(*v[20:27]),
            )
        return out

    def rank_sums(self, column: str, control: str, arm: str) -> tuple[float, float]:
        """Mann-Whitney inputs without moving per-user values: the mid-rank sum of `control`
        in the pooled (control, arm) sample, and the tie term sum(t^3 - t), in one sort: each
        of the t users of a tie adds t^2 - 1 to it."""
        p = self.pu.c
        v = p[column]
        ties = _f(func.count().over(partition_by=v))
        ranked = (
            select(
                p.exp_group,
                (_f(func.rank().over(order_by=v)) + (ties - 1) / 2.0).label("r"),
                ties.label("t"),
            )
            .where(p.exp_group.in_([control, arm]))
            .subquery()
        )
        r = ranked.c
        rank_sum, tie_term = self.conn.execute(
            select(func.sum(case((r.exp_group == control, r.r))), func.sum(r.t * r.t - 1.0))
        ).one()
        return float(rank_sum or 0), float(tie_term or 0)

    def bucket_sums(self, arm: str, buckets: int) -> BucketSums:
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
        cols = np.array(self.conn.execute(q).all(), dtype=float).reshape(-1, 5).T
        return BucketSums(*cols)

    def daily_sums(
        self, days: Callable[[int], str]
    ) -> tuple[list[tuple[str, LookSums]], list[tuple[str, LookSums]]]:
        """Per (arm, day), in one scan of `ud`: the look, each arm's sufficient statistics as
        they stood at that day's end from the exposures served and the likes made by then;
        and the day alone, the sufficient statistics of that day's exposures (each active
        user's metrics over the day; hits and likes as finally attributed).

        For the looks SQL sums the increments of each per-user moment from each row's running
        sums and the previous row's (they telescope to the change over the day); Python adds
        them up day by day."""
        u = self.ud.c
        cur = {s: u[f"cum_{s}"] for s in RUNNING}
        prev = {s: u[f"cum_{s}"] - u[s] for s in RUNNING}
        first = u.cum_n_exp == u.n_exp
        look = [func.sum(case((first, 1), else_=0))]
        look += [
            func.sum(expr(cur) - case((first, 0.0), else_=expr(prev))) for expr in _MOMENTS.values()
        ]
        # the user-day's exposures row (the other rows only add likes becoming known)
        active = u.n_exp > 0
        today = {"n_exp": u.n_exp, "n_items": u.n_items, "hits_seen": u.hits, "liked_seen": u.liked}
        alone = [func.sum(case((active, 1), else_=0))]
        alone += [func.sum(case((active, expr(today)))) for expr in _MOMENTS.values()]
        q = select(u.exp_group, u.day, *look, *alone).group_by(u.exp_group, u.day).order_by(u.day)
        running: dict[str, np.ndarray] = {}
        looks, per_day = [], []
        for row in self.conn.execute(q):
            arm, day = row[0], days(int(row[1]))
            values = [float(x or 0) for x in row[2:]]
            acc = running.setdefault(arm, np.zeros(len(look)))
            acc += values[: len(look)]
            looks.append((arm, LookSums(day, *acc.tolist())))
            if values[len(look)]:
                per_day.append((arm, LookSums(day, *values[len(look) :])))
        return looks, per_day


def _hr(c: dict) -> ColumnElement:
    return _f(c["hits_seen"]) / _f(c["n_exp"])


def _lr(c: dict) -> ColumnElement:
    return case((c["n_items"] > 0, _f(c["liked_seen"]) / _f(c["n_items"])), else_=0.0)


_MOMENTS: dict[str, Callable[[dict], ColumnElement]] = {
    "hr": _hr,
    "hr_sq": lambda c: _hr(c) * _hr(c),
    "lr": _lr,
    "lr_sq": lambda c: _lr(c) * _lr(c),
    "liked": lambda c: _f(c["liked_seen"]),
    "liked_sq": lambda c: _f(c["liked_seen"]) * c["liked_seen"],
    "items": lambda c: _f(c["n_items"]),
    "items_sq": lambda c: _f(c["n_items"]) * c["n_items"],
    "liked_items": lambda c: _f(c["liked_seen"]) * c["n_items"],
    "conv": lambda c: case((c["hits_seen"] > 0, 1.0), else_=0.0),
}
"""Per-user moments of LookSums, in its field order, over a user's (cumulative) counts."""


def _exposure_sums(credited: Table, pre: tuple[datetime, datetime]) -> Select:
    """Per-user exposures, posts served, hit exposures and liked served posts over every
    non-QA exposure in the pre-period (any experiment), with its credited likes."""
    e, c = exposures.c, credited.c
    zero, one = literal(0), literal(1)
    served = select(e.user_id, one, e.n_posts, zero, zero).where(
        e.ts >= pre[0], e.ts < pre[1], e.qa.is_(False)
    )
    liked = (
        select(c.user_id, zero, zero, one, func.count())
        .where(c.ts >= pre[0], c.ts < pre[1])
        .group_by(c.request_id, c.user_id)
    )
    rows = union_all(served, liked).subquery("rows")
    r = list(rows.c)
    return select(r[0], *(func.sum(x) for x in r[1:])).group_by(r[0])


def guardrails(conn: Connection, sel: Selection, arms: Sequence[str]) -> dict[str, Guardrail]:
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
        r["exp_group"]: Guardrail(
            int(r["n"]),
            float(r["fb"] or 0) / r["n"],
            None if r["lat"] is None else float(r["lat"]),
            None if r["p50"] is None else float(r["p50"]),
            None if r["p95"] is None else float(r["p95"]),
        )
        for r in rows
        if r["n"]
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
