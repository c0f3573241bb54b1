"""`feedlab analyze` on real databases: SQL metrics against an independent Python reference
and scipy/statsmodels, SQLite == PostgreSQL, attribution, CUPED's pre-period, health checks,
QA traffic, ranges, segments, capping, daily looks, phases and pooling."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timedelta

import jsonschema
import numpy as np
import pytest
from feedlab.analysis.online.analyze import Options, PoolingRefused, analyze, analyze_versions
from feedlab.analysis.online.results import MetricResult, PhaseResult
from feedlab.analysis.report.serialize import SCHEMA_PATH, schema_text, to_json
from feedlab.analysis.stats.sequential import cs_half_width
from feedlab.storage.schema import exposure_items, exposures, feed
from scipy import stats
from sqlalchemy import Connection, insert, select, update
from statsmodels.stats.proportion import test_proportions_2indep as wald_2indep
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW
from typer.testing import CliRunner

from feedlab.cli import app
from tests.support.db import migrated
from tests.support.reports import assert_close, comparable
from tests.support.synthetic import PhaseSpec, config_yaml, insert_phase, store_config

T0 = datetime(2024, 3, 4)
TOL = 1e-9
OPTS = Options(n_boot=200)


def _spec(**kw) -> PhaseSpec:
    base = dict(
        weights={"control": 50, "test": 50},
        like_prob={"control": 0.25, "test": 0.32},
        start=T0,
        users=240,
    )
    return PhaseSpec(**(base | kw))


def _metric(phase: PhaseResult, key: str) -> MetricResult:
    return phase.comparisons[0].metric(key)


def _expose(conn: Connection, rows, experiment: str, version: str, posts=(100, 200), qa=False):
    """Exposures (request_id, user, arm, ts) serving `posts`, with their items."""
    conn.execute(
        insert(exposures),
        [
            dict(
                request_id=rid,
                ts=ts,
                served_at=ts,
                user_id=u,
                experiment=experiment,
                config_version=version,
                exp_group=arm,
                model=arm,
                post_ids=list(posts),
                fallback=False,
                latency_ms=1.0,
                qa=qa,
            )
            for rid, u, arm, ts in rows
        ],
    )
    conn.execute(
        insert(exposure_items),
        [
            dict(request_id=rid, position=i, post_id=p, user_id=u, ts=ts)
            for rid, u, _, ts in rows
            for i, p in enumerate(posts)
        ],
    )


def _like(conn: Connection, likes) -> None:
    conn.execute(
        insert(feed), [dict(timestamp=t, user_id=u, post_id=p, action="like") for u, p, t in likes]
    )


def _raw(engine):
    with engine.connect() as conn:
        exp = conn.execute(select(exposures)).mappings().all()
        likes = conn.execute(select(feed).where(feed.c.action == "like")).mappings().all()
    return exp, likes


def _credits(exp, likes, window_s: float = 3600.0) -> dict:
    """request_id -> {post: [like times]}: each like credited to the latest exposure that
    served its post to its user within the window before it."""
    w = timedelta(seconds=window_s)
    served = defaultdict(list)
    for e in exp:
        for p in e["post_ids"]:
            served[(e["user_id"], p)].append((e["ts"], e["request_id"]))
    out: dict = defaultdict(lambda: defaultdict(list))
    for lk in likes:
        t = lk["timestamp"]
        cands = [c for c in served[(lk["user_id"], lk["post_id"])] if c[0] <= t < c[0] + w]
        if cands:
            out[max(cands)[1]][lk["post_id"]].append(t)
    return out


def _sums(rows, credits, key, like_before=None) -> dict:
    """Per key(e): n_exp, n_items, hits, liked (distinct credited posts)."""
    out = defaultdict(lambda: [0, 0, 0, 0])
    for e in rows:
        posts = credits.get(e["request_id"], {})
        n_liked = sum(
            any(like_before is None or t < like_before for t in times) for times in posts.values()
        )
        s = out[key(e)]
        s[0] += 1
        s[1] += len(e["post_ids"])
        s[2] += n_liked > 0
        s[3] += n_liked
    return out


def _reference(engine, experiment: str, version: str, window_s: float = 3600.0):
    """Per-user metrics recomputed in Python from the raw rows (no SQL aggregation), by the
    documented rules: each like credited to the latest exposure serving the post within the
    window; the pre-period ends at the experiment's first exposure."""
    exp, likes = _raw(engine)
    credits = _credits(exp, likes, window_s)
    phase = [e for e in exp if e["experiment"] == experiment and e["config_version"] == version]
    lo, hi = min(e["ts"] for e in phase), max(e["ts"] for e in phase)
    first = min(e["ts"] for e in exp if e["experiment"] == experiment)
    pre_rows = [e for e in exp if first - (hi - lo) <= e["ts"] < first]
    pre = _sums(pre_rows, credits, lambda e: e["user_id"], like_before=first)
    arms = defaultdict(lambda: defaultdict(list))
    users = _sums(phase, credits, lambda e: (e["exp_group"], e["user_id"]))
    for (group, user), (n, items, hits, liked) in sorted(users.items()):
        pn, _, phits, _ = pre.get(user, [0, 0, 0, 0])
        a = arms[group]
        a["hr"].append(hits / n)
        a["liked"].append(liked)
        a["items"].append(items)
        a["lr"].append(liked / items)
        a["conv"].append(int(hits > 0))
        a["pre_hr"].append(phits / pn if pn else 0.0)
        a["has_pre"].append(float(pn > 0))
    return {g: {k: np.array(v, dtype=float) for k, v in d.items()} for g, d in arms.items()}


def _cuped_reference(a: dict, b: dict):
    """CUPED by least squares on the pooled, centred per-user values, then scipy's Welch."""
    x = np.column_stack([np.concatenate([a[k], b[k]]) for k in ("pre_hr", "has_pre")])
    x = x[:, x.std(axis=0) > 0]
    y = np.concatenate([a["hr"], b["hr"]])
    theta = np.linalg.lstsq(x - x.mean(axis=0), y - y.mean(), rcond=None)[0]
    adj = y - (x - x.mean(axis=0)) @ theta
    na = a["hr"].size
    return theta, stats.ttest_ind(adj[na:], adj[:na], equal_var=False)


def test_metrics_and_tests_match_scipy_on_reference_per_user_values(engine):
    with engine.begin() as conn:
        version = insert_phase(conn, "feedx", _spec(), seed=3)
    phase = analyze(engine, "feedx", options=OPTS).phases[0]
    ref = _reference(engine, "feedx", version)
    a, b = ref["control"], ref["test"]
    assert phase.users == {"control": a["hr"].size, "test": b["hr"].size}

    hr = _metric(phase, "hitrate")
    welch = stats.ttest_ind(b["hr"], a["hr"], equal_var=False)
    ci = welch.confidence_interval()
    assert hr.test.mean_control == pytest.approx(a["hr"].mean(), abs=1e-12)
    assert hr.test.p_value == pytest.approx(welch.pvalue, abs=TOL)
    assert (hr.test.ci_low, hr.test.ci_high) == pytest.approx((ci.low, ci.high), abs=TOL)
    mwu = stats.mannwhitneyu(a["hr"], b["hr"], method="asymptotic")
    assert hr.mann_whitney.p_value == pytest.approx(mwu.pvalue, abs=TOL)

    theta, cuped = _cuped_reference(a, b)
    assert theta[0] != 0  # the pre-period carries signal in this world
    assert hr.cuped.applied
    assert hr.cuped.theta[0] == pytest.approx(theta[0], abs=TOL)
    assert hr.cuped.result.p_value == pytest.approx(cuped.pvalue, abs=TOL)

    likes = _metric(phase, "likes_per_user")
    ref_likes = stats.ttest_ind(b["liked"], a["liked"], equal_var=False)
    assert likes.test.p_value == pytest.approx(ref_likes.pvalue, abs=TOL)

    conv = _metric(phase, "converted")
    ref_conv = wald_2indep(
        b["conv"].sum(), b["conv"].size, a["conv"].sum(), a["conv"].size, method="wald"
    )
    assert conv.test.p_value == pytest.approx(ref_conv.pvalue, abs=TOL)

    with engine.connect() as conn:
        lat = conn.execute(
            select(exposures.c.latency_ms).where(
                exposures.c.config_version == version, exposures.c.exp_group == "test"
            )
        ).scalars()
        lat = np.sort(np.fromiter(lat, dtype=float))
    guard = phase.guardrails["test"]
    assert guard.latency_p50_ms == lat[int(np.ceil(0.5 * lat.size)) - 1]
    assert guard.latency_p95_ms == lat[int(np.ceil(0.95 * lat.size)) - 1]

    lr = _metric(phase, "like_rate")
    pseudo = []
    for d in (b, a):
        r = d["liked"].sum() / d["items"].sum()
        pseudo.append(DescrStatsW(r + (d["liked"] - r * d["items"]) / d["items"].mean()))
    _, p_lr = CompareMeans(*pseudo).ztest_ind(usevar="unequal")
    assert lr.test.p_value == pytest.approx(p_lr, abs=TOL)


def test_sqlite_and_postgres_give_identical_results(sqlite_url, pg_url):
    reports = []
    for url in (sqlite_url, pg_url):
        eng = migrated(url)
        with eng.begin() as conn:
            insert_phase(conn, "feedx", _spec(users=200), seed=5)
        report = analyze(eng, "feedx", options=Options(n_boot=200, cap=0.99, anytime=True))
        eng.dispose()
        reports.append(comparable(report))
    assert_close(reports[0], reports[1])


def test_attribution_window_edges(engine):
    """Hit iff the user liked a served post in [ts, ts + window): not before, not at the end,
    not another post, not another user."""
    with engine.begin() as conn:
        version = insert_phase(conn, "edge", _spec(users=2, exposures_per_user=0), pre_period=False)
        rows = []
        for k, (user, arm) in enumerate([(1, "control"), (2, "test"), (3, "control"), (4, "test")]):
            for j in range(5):
                rows.append((f"{k}-{j}", user, arm, T0 + timedelta(hours=3 * j + 10 * k)))
        _expose(conn, rows, "edge", version)
        first = {u: ts for rid, u, _, ts in rows if rid.endswith("-0")}
        _like(
            conn,
            [
                (1, 100, first[1]),  # at ts: hit
                (1, 200, first[1] + timedelta(minutes=59, seconds=59)),  # same exposure
                (2, 100, first[2] + timedelta(hours=1)),  # exactly at ts + window: no hit
                (2, 100, first[2] - timedelta(seconds=1)),  # before the exposure: no hit
                (3, 999, first[3] + timedelta(minutes=5)),  # post not served: no hit
                (1, 100, first[4] + timedelta(minutes=5)),  # another user's like
            ],
        )
    phase = analyze(engine, "edge", options=OPTS).phases[0]
    hr = _metric(phase, "hitrate").test
    liked = _metric(phase, "likes_per_user").test
    assert phase.users == {"control": 2, "test": 2}
    assert hr.mean_control == pytest.approx((1 / 5 + 0) / 2)  # user 1: 1 of 5 exposures
    assert hr.mean_test == 0.0
    assert liked.mean_control == pytest.approx(2 / 2)  # both posts of user 1's exposure


def test_a_like_is_credited_once_to_the_latest_exposure_of_the_post(engine):
    """Two identical users who each like once: the test arm served the liked post twice in
    the window before the like, control once. Both arms: HitRate 0.5, one like."""
    with engine.begin() as conn:
        version = insert_phase(
            conn, "reserve", _spec(users=2, exposures_per_user=0), pre_period=False
        )
        t = T0 + timedelta(hours=1)
        _expose(
            conn,
            [
                ("c-1", 1, "control", t),
                ("c-2", 1, "control", t + timedelta(minutes=10)),
                ("t-1", 2, "test", t),
                ("t-2", 2, "test", t + timedelta(minutes=10)),
                ("c-3", 3, "control", t),
                ("c-4", 3, "control", t + timedelta(minutes=10)),
                ("t-3", 4, "test", t),
                ("t-4", 4, "test", t + timedelta(minutes=10)),
            ],
            "reserve",
            version,
            posts=(7, 8),
        )
        # control's second exposure served other posts: user 1's like credits only c-1
        conn.execute(
            update(exposure_items)
            .where(exposure_items.c.request_id.in_(["c-2", "c-4"]))
            .values(post_id=exposure_items.c.post_id + 100)
        )
        like_at = t + timedelta(minutes=20)
        _like(conn, [(1, 7, like_at), (2, 7, like_at)])
    phase = analyze(engine, "reserve", options=OPTS).phases[0]
    hr = _metric(phase, "hitrate").test
    likes = _metric(phase, "likes_per_user").test
    assert hr.mean_control == hr.mean_test == pytest.approx((1 / 2 + 0) / 2)
    assert likes.mean_control == likes.mean_test == pytest.approx(1 / 2)
    assert "credited once" in analyze(engine, "reserve", options=OPTS).attribution


def test_cuped_pre_period_ends_at_the_first_exposure_of_the_experiment(engine):
    with engine.begin() as conn:
        v1 = insert_phase(conn, "carry", _spec(days=2), seed=11)
        v2 = insert_phase(
            conn,
            "carry",
            _spec(
                start=T0 + timedelta(days=2),
                days=2,
                salt="salt-2",
                first_user=1000,
                like_prob={"control": 0.2, "test": 0.2},
            ),
            seed=12,
            pre_period=False,
        )
    report = analyze(engine, "carry", options=OPTS)
    p1, p2 = report.phases
    assert (p1.config_version, p2.config_version) == (v1, v2)
    first = p1.start
    for p in (p1, p2):
        assert p.pre_period[1] == first  # never overlaps any phase of the experiment
        assert p.pre_period[0] == first - (p.end - p.start)
    # phase 2's users are new and had no pre-period data: CUPED says so, never a result
    cuped = _metric(p2, "hitrate").cuped
    assert not cuped.applied and cuped.result is None
    assert "no user has pre-period data" in cuped.reason
    assert _metric(p1, "hitrate").cuped.applied


def test_cuped_with_users_missing_pre_period_data_uses_the_indicator(engine):
    with engine.begin() as conn:
        version = insert_phase(conn, "half", _spec(), seed=3)
        # half the users lose their pre-period exposures
        conn.execute(
            exposures.delete().where(
                exposures.c.config_version == "pre", exposures.c.user_id % 2 == 0
            )
        )
    phase = analyze(engine, "half", options=OPTS).phases[0]
    ref = _reference(engine, "half", version)
    a, b = ref["control"], ref["test"]
    assert 0 < a["has_pre"].mean() < 1
    theta, cuped = _cuped_reference(a, b)
    hr = _metric(phase, "hitrate").cuped
    assert hr.applied and len(hr.theta) == 2
    assert hr.theta == pytest.approx(theta.tolist(), abs=TOL)
    assert hr.result.p_value == pytest.approx(cuped.pvalue, abs=TOL)


def test_decision_metric_from_the_yaml_is_tested_at_full_alpha(engine):
    with engine.begin() as conn:
        version = insert_phase(conn, "decide", _spec(), seed=3)
        text = config_yaml("decide", "salt-1", {"control": 50, "test": 50}).replace(
            "  arms:", "  primary_metric: like_rate\n  arms:"
        )
        declared = store_config(conn, text, T0 - timedelta(minutes=2))
        conn.execute(
            update(exposures)
            .where(exposures.c.config_version == version)
            .values(config_version=declared)
        )
    phase = analyze(engine, "decide", options=OPTS).phases[0]
    comp = phase.comparisons[0]
    assert phase.decision_metric == "like_rate"
    decision = comp.metric("like_rate")
    assert decision.role == "decision" and decision.p_adjusted == decision.test.p_value
    secondary = [m for m in comp.metrics if m.role == "secondary"]
    assert len(secondary) == 4
    from statsmodels.stats.multitest import multipletests

    ref = multipletests([m.test.p_value for m in secondary], method="holm")[1]
    assert [m.p_adjusted for m in secondary] == pytest.approx(ref.tolist(), abs=TOL)
    assert comp.verdict.metric == "like_rate" and "like-rate" in comp.verdict.text
    bh = analyze(engine, "decide", options=Options(n_boot=200, correction="bh")).phases[0]
    ref = multipletests([m.test.p_value for m in secondary], method="fdr_bh")[1]
    got = [m.p_adjusted for m in bh.comparisons[0].metrics if m.role == "secondary"]
    assert got == pytest.approx(ref.tolist(), abs=TOL)


def _simpson_world(conn) -> tuple[str, str]:
    """Phase 1: 90/10 split while everyone likes a lot; phase 2: 10/90 while likes are rare.
    In each phase test beats control; pooled, test looks worse (it is mostly phase 2)."""
    v1 = insert_phase(
        conn,
        "simpson",
        _spec(
            weights={"control": 90, "test": 10},
            like_prob={"control": 0.55, "test": 0.7},
            users=1000,
            days=2,
            salt="s1",
        ),
        seed=1,
        pre_period=False,
    )
    v2 = insert_phase(
        conn,
        "simpson",
        _spec(
            weights={"control": 10, "test": 90},
            like_prob={"control": 0.05, "test": 0.1},
            users=1000,
            first_user=10_001,
            start=T0 + timedelta(days=2),
            days=2,
            salt="s2",
        ),
        seed=2,
        pre_period=False,
    )
    return v1, v2


@pytest.mark.slow
def test_split_change_is_reported_per_phase_and_pooling_would_be_wrong(engine):
    with engine.begin() as conn:
        v1, v2 = _simpson_world(conn)
    report = analyze(engine, "simpson", options=OPTS)
    phases = report.phases
    assert [p.config_version for p in phases] == [v1, v2]
    assert [p.arms[0].weight for p in phases] == [90, 10]
    assert all(_metric(p, "hitrate").test.diff > 0 for p in phases)
    assert all(not p.health.srm.flagged for p in phases)
    assert "never pool" in report.notes[0]

    pooled = analyze_versions(engine, "simpson", [v1, v2], OPTS)
    assert _metric(pooled, "hitrate").test.diff < 0  # Simpson's paradox
    assert pooled.health.srm.flagged  # pooled users no longer match either split
    with pytest.raises(PoolingRefused, match="Simpson"):
        analyze(engine, "simpson", options=OPTS, pool=True)
    only = analyze(engine, "simpson", phase=v2, options=OPTS)
    assert [p.config_version for p in only.phases] == [v2]


def test_srm_in_data_is_flagged_and_overrides_the_verdict(sqlite_url):
    eng = migrated(sqlite_url)
    with eng.begin() as conn:
        # users split 70/30; then their exposures are relabelled with a config saying 50/50
        insert_phase(conn, "skew", _spec(weights={"control": 70, "test": 30}, users=600), seed=4)
        lying = store_config(conn, config_yaml("skew", "salt-1", {"control": 50, "test": 50}), T0)
        conn.execute(
            exposures.update().where(exposures.c.experiment == "skew").values(config_version=lying)
        )
    phase = analyze(eng, "skew", options=OPTS).phases[0]
    eng.dispose()
    assert phase.health.srm.flagged
    assert phase.health.srm.p_value < 1e-3
    assert phase.comparisons[0].verdict.status == "invalid"
    assert any("SRM" in w for w in phase.warnings)


def test_users_in_two_arms_are_excluded_and_carried_over_users_counted(engine):
    with engine.begin() as conn:
        v1 = insert_phase(conn, "health", _spec(users=100, days=1), seed=4, pre_period=False)
        v2 = insert_phase(
            conn,
            "health",
            _spec(users=100, first_user=51, start=T0 + timedelta(days=1), days=1, salt="salt-2"),
            seed=5,
            pre_period=False,
        )
        # user 60 also appears in the other arm of phase 2
        row = (
            conn.execute(
                select(exposures).where(exposures.c.config_version == v2, exposures.c.user_id == 60)
            )
            .mappings()
            .first()
        )
        other = "test" if row["exp_group"] == "control" else "control"
        _expose(conn, [("dup", 60, other, row["ts"])], "health", v2)
    p1, p2 = analyze(engine, "health", options=OPTS).phases
    assert p1.config_version == v1 and p1.health.carried_over_users == 0
    assert p2.health.multi_arm_users_excluded == 1
    assert sum(p2.users.values()) == 99
    assert p2.health.carried_over_users == 49  # users 51-100 but 60 were in phase 1's split
    assert not p2.health.carried_over_excluded
    restricted = analyze(engine, "health", options=Options(n_boot=200, new_users_only=True))
    q2 = restricted.phases[1]
    assert q2.health.carried_over_excluded and sum(q2.users.values()) == 50
    assert any("carried over" in w for w in q2.warnings)


def test_qa_exposures_and_the_range_never_enter_the_analysis(engine):
    with engine.begin() as conn:
        version = insert_phase(conn, "qa", _spec(users=120), seed=6)
    before = comparable(analyze(engine, "qa", options=OPTS))
    with engine.begin() as conn:
        # a QA request years later, for a new user and an existing one, and a like on it
        late = T0 + timedelta(days=900)
        _expose(
            conn,
            [("qa-1", 1, "control", late), ("qa-2", 999_999, "test", late)],
            "qa",
            version,
            qa=True,
        )
        _like(conn, [(1, 100, late + timedelta(minutes=1))])
    after = comparable(analyze(engine, "qa", options=OPTS))
    assert after["phases"][0]["health"]["qa_exposures_excluded"] == 2
    after["phases"][0]["health"]["qa_exposures_excluded"] = 0
    assert_close(before, after)

    ranged = analyze(engine, "qa", options=Options(n_boot=200, until=T0 + timedelta(days=1)))
    phase = ranged.phases[0]
    assert phase.end < T0 + timedelta(days=1)
    assert phase.health.outside_range_exposures > 0
    assert phase.exposures + phase.health.outside_range_exposures == 120 * 4


def test_a_config_that_comes_back_starts_a_new_segment(engine):
    with engine.begin() as conn:
        v1 = insert_phase(conn, "back", _spec(users=100, days=1), seed=7, pre_period=False)
        insert_phase(
            conn,
            "back",
            _spec(users=100, first_user=1000, start=T0 + timedelta(days=1), days=1, salt="x"),
            seed=8,
            pre_period=False,
        )
        # the first YAML restored: same content, same version, a day later
        rows = (
            conn.execute(select(exposures).where(exposures.c.config_version == v1)).mappings().all()
        )
        _expose(
            conn,
            [
                (f"back-{i}", r["user_id"], r["exp_group"], r["ts"] + timedelta(days=2))
                for i, r in enumerate(rows)
            ],
            "back",
            v1,
        )
        # a worker still on the first config while the second one ran
        late = rows[0]
        lag = (late["user_id"], late["exp_group"], T0 + timedelta(days=1, hours=12))
        _expose(conn, [("lagging", *lag)], "back", v1)
    report = analyze(engine, "back", options=OPTS)
    assert [(p.config_version, p.segment) for p in report.phases] == [
        (v1, 1),
        (report.phases[1].config_version, 1),
        (v1, 2),
    ]
    assert report.phases[0].exposures == report.phases[2].exposures == 400
    assert report.phases[0].health.outside_active_time_exposures == 1
    assert report.phases[0].end < T0 + timedelta(days=1)
    assert any("came back" in n for n in report.notes)


def test_capping_winsorizes_per_user_metrics_and_is_reported(engine):
    with engine.begin() as conn:
        version = insert_phase(conn, "cap", _spec(), seed=3)
    off = analyze(engine, "cap", options=OPTS).phases[0]
    assert off.capping.quantile is None and off.capping.caps == {}
    phase = analyze(engine, "cap", options=Options(n_boot=200, cap=0.9)).phases[0]
    ref = _reference(engine, "cap", version)
    pooled = np.concatenate([ref["control"]["liked"], ref["test"]["liked"]])
    cap = np.sort(pooled)[int(np.ceil(0.9 * pooled.size)) - 1]
    assert phase.capping.caps["liked"] == cap
    assert phase.capping.capped_users["liked"] == int((pooled > cap).sum())
    a, b = (np.minimum(ref[g]["liked"], cap) for g in ("control", "test"))
    welch = stats.ttest_ind(b, a, equal_var=False)
    assert _metric(phase, "likes_per_user").test.p_value == pytest.approx(welch.pvalue, abs=TOL)


def test_each_daily_look_sees_only_the_data_available_then(engine):
    """Three days, three looks; a like made on day 2 for a day-1 exposure counts from look 2."""
    with engine.begin() as conn:
        version = insert_phase(
            conn, "looks", _spec(users=2, exposures_per_user=0), pre_period=False
        )
        rows = [
            (f"{u}-{d}", u, arm, T0 + timedelta(days=d, hours=23, minutes=30))
            for u, arm in [(1, "control"), (2, "test"), (3, "control"), (4, "test")]
            for d in range(3)
        ]
        _expose(conn, rows, "looks", version)
        _like(
            conn,
            [
                (2, 100, T0 + timedelta(days=1, minutes=10)),  # day-1 exposure, liked on day 2
                (1, 100, T0 + timedelta(days=2, hours=23, minutes=40)),
                (4, 200, T0 + timedelta(days=3, minutes=5)),  # after the last day: last look
            ],
        )
    phase = analyze(engine, "looks", options=OPTS).phases[0]
    cum = [e for e in phase.effects if e.kind == "cumulative"]
    assert [e.day for e in cum] == ["2024-03-04", "2024-03-05", "2024-03-06"]
    seq = phase.comparisons[0].sequential
    assert seq.test.fractions == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert len(seq.test.z) == 3 and seq.complete
    assert seq.test.z[0] == 0.0  # no like yet: no variance, no evidence
    # look 1: no like yet; look 2: user 2 (test) has 1 hit of 2 exposures
    assert cum[0].effect.diff == 0.0
    assert cum[1].effect.diff == pytest.approx((0.5 + 0) / 2)
    final = _metric(phase, "hitrate").test
    assert cum[-1].effect.diff == pytest.approx(final.diff, abs=TOL)
    days = [e for e in phase.effects if e.kind == "day"]
    assert [e.day for e in days] == ["2024-03-04", "2024-03-05", "2024-03-06"]
    assert days[0].effect.diff == pytest.approx(0.5)  # the day-1 exposure's like, attributed


def test_planned_days_keep_the_sequential_test_open(sqlite_url):
    eng = migrated(sqlite_url)
    with eng.begin() as conn:
        insert_phase(conn, "daily", _spec(days=4, users=300), seed=8)
    phase = analyze(eng, "daily", options=Options(n_boot=100, planned_days=8)).phases[0]
    eng.dispose()
    seq = phase.comparisons[0].sequential
    assert len(seq.test.boundaries) == len(seq.test.z) == 4
    assert seq.test.fractions == pytest.approx([1 / 8, 2 / 8, 3 / 8, 4 / 8])
    assert not seq.complete
    assert seq.test.boundaries[0] > seq.test.boundaries[-1]
    assert phase.comparisons[0].verdict.basis.startswith("group-sequential")


def test_json_schema_is_documented_current_and_validates_a_report(sqlite_url):
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text(), (
        "regenerate: python -m feedlab.analysis.report.serialize"
    )
    eng = migrated(sqlite_url)
    with eng.begin() as conn:
        insert_phase(conn, "schema", _spec(users=100), seed=9)
    report = analyze(eng, "schema", options=Options(n_boot=100, anytime=True, cap=0.99))
    eng.dispose()
    data = json.loads(to_json(report))
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
    phase = data["phases"][0]
    assert {"health", "comparisons", "guardrails", "effects", "capping", "pre_period"} <= set(phase)
    metric = phase["comparisons"][0]["metrics"][0]
    assert metric["mann_whitney"]["ci_low"] is None  # NaN became null
    bad = json.loads(json.dumps(data))
    bad["phases"][0]["health"]["srm"]["flagged"] = "no"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def test_cli_json_table_and_plan(sqlite_url, tmp_path):
    eng = migrated(sqlite_url)
    with eng.begin() as conn:
        insert_phase(conn, "clix", _spec(users=100), seed=9)
    eng.dispose()
    runner = CliRunner()
    out = tmp_path / "r.json"
    args = ["analyze", "clix", "--url", sqlite_url, "--bootstrap", "100"]
    res = runner.invoke(app, [*args, "--format", "json", "--out", str(out), "--window", "30m"])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["window_s"] == 1800 and data["phases"][0]["health"]["srm"]["flagged"] is False
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and "hitrate" in res.output and "guardrails" in res.output
    assert "capping off" in res.output and "decision" in res.output
    res = runner.invoke(app, [*args, "--from", "2024-03-05", "--to", "2024-03-06", "--cap", "0.99"])
    assert res.exit_code == 0, res.output
    assert "exposures outside --from/--to" in res.output and "0.99 quantile" in res.output
    res = runner.invoke(app, ["analyze", "nope", "--url", sqlite_url])
    assert res.exit_code == 2 and "nope" in res.output
    for bad in ("soon", "5"):  # a bare number has no unit: refused, not taken as seconds
        res = runner.invoke(app, ["analyze", "clix", "--url", sqlite_url, "--window", bad])
        assert res.exit_code != 0 and "--window" in res.output, bad
        assert "unit s, m, h or d" in res.output
    res = runner.invoke(
        app, ["analyze", "--plan", "--baseline", "0.1", "--mde", "0.05", "--format", "json"]
    )
    assert res.exit_code == 0, res.output
    plan = json.loads(res.output)
    assert plan["n_control"] == 57760 and plan["mde_is"] == "relative lift"
    res = runner.invoke(app, ["analyze", "--plan", "--baseline", "0.5", "--sd", "0.3"])
    assert res.exit_code == 0 and "relative lift" in res.output and "+5.00%" in res.output


def test_three_arms_correct_the_decision_across_arms_and_anytime_decides(sqlite_url):
    eng = migrated(sqlite_url)
    with eng.begin() as conn:
        insert_phase(
            conn,
            "three",
            _spec(
                weights={"control": 34, "a": 33, "b": 33},
                like_prob={"control": 0.25, "a": 0.32, "b": 0.26},
                users=450,
            ),
            seed=10,
        )
    phase = analyze(eng, "three", options=OPTS).phases[0]
    anytime = analyze(eng, "three", options=Options(n_boot=100, anytime=True)).phases[0]
    eng.dispose()
    from statsmodels.stats.multitest import multipletests

    decision = [c.metric("hitrate") for c in phase.comparisons]
    ref = multipletests([m.test.p_value for m in decision], method="holm")[1]
    assert [m.p_adjusted for m in decision] == pytest.approx(ref.tolist(), abs=TOL)
    assert "adjusted across arms" in phase.comparisons[0].verdict.basis
    secondary = [m for c in phase.comparisons for m in c.metrics if m.role == "secondary"]
    ref = multipletests([m.test.p_value for m in secondary], method="holm")[1]
    assert [m.p_adjusted for m in secondary] == pytest.approx(ref.tolist(), abs=TOL)
    comp = anytime.comparisons[0]
    assert comp.verdict.basis.startswith("anytime-valid")
    assert len(comp.anytime.looks) == 3
    last = comp.anytime.looks[-1]
    assert last.cs_low < comp.metric("hitrate").test.ci_low  # wider than the fixed-horizon CI
    final = comp.metric("hitrate").test
    users = phase.users["control"] + phase.users["a"]
    assert last.users == users and last.diff == pytest.approx(final.diff, abs=TOL)
    assert last.cs_high - last.diff == pytest.approx(cs_half_width(final.se, users), abs=TOL)


def test_effects_per_day_and_cumulative_match_welch_on_reference_values(engine):
    """Per day: Welch on each active user's HitRate over that day's exposures. Cumulative at
    day d: Welch on each user's HitRate over exposures up to d with likes made up to d's end
    (the last look also sees likes after the last exposure)."""
    with engine.begin() as conn:
        version = insert_phase(conn, "days", _spec(users=300), seed=12)
    phase = analyze(engine, "days", options=OPTS).phases[0]
    exp, likes = _raw(engine)
    credits = _credits(exp, likes)
    rows = [e for e in exp if e["config_version"] == version]
    days = sorted({e["ts"].date() for e in rows})
    for kind in ("day", "cumulative"):
        got = [p for p in phase.effects if p.kind == kind]
        assert [p.day for p in got] == [d.isoformat() for d in days]
        for d, point in zip(days, got, strict=True):
            end = datetime.combine(d, datetime.min.time()) + timedelta(days=1)
            last = d == days[-1]
            if kind == "day":
                sel = [e for e in rows if e["ts"].date() == d]
                sums = _sums(sel, credits, lambda e: (e["exp_group"], e["user_id"]))
            else:
                sel = [e for e in rows if e["ts"].date() <= d]
                before = None if last else end
                sums = _sums(sel, credits, lambda e: (e["exp_group"], e["user_id"]), before)
            hr = {
                g: np.array([h / n for (a, _), (n, _, h, _) in sums.items() if a == g])
                for g in ("control", "test")
            }
            ref = stats.ttest_ind(hr["test"], hr["control"], equal_var=False)
            ci = ref.confidence_interval()
            assert point.users == hr["control"].size + hr["test"].size
            assert point.z == pytest.approx(ref.statistic, abs=TOL)
            assert (point.effect.ci_low, point.effect.ci_high) == pytest.approx(
                (ci.low, ci.high), abs=TOL
            )
    assert got[-1].effect.diff == pytest.approx(_metric(phase, "hitrate").test.diff, abs=TOL)
