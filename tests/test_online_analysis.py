"""`feedlab analyze` on real databases: SQL metrics against an independent Python reference
and scipy/statsmodels, SQLite == PostgreSQL, attribution window edges, phases and pooling."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timedelta

import numpy as np
import pytest
from feedlab.analysis.online.analyze import Options, PoolingRefused, analyze, analyze_versions
from feedlab.storage.schema import exposure_items, exposures, feed
from scipy import stats
from sqlalchemy import insert, select
from statsmodels.stats.proportion import proportions_ztest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW
from typer.testing import CliRunner

from feedlab.cli import app
from tests.support.db import migrated
from tests.support.synthetic import PhaseSpec, config_yaml, insert_phase, store_config

T0 = datetime(2024, 3, 4)
TOL = 1e-6
OPTS = Options(n_boot=200)


def _spec(**kw) -> PhaseSpec:
    base = dict(
        weights={"control": 50, "test": 50},
        like_prob={"control": 0.25, "test": 0.32},
        start=T0,
        users=240,
    )
    return PhaseSpec(**(base | kw))


def _metric(report_phase: dict, key: str) -> dict:
    return next(m for m in report_phase["comparisons"][0]["metrics"] if m["metric"] == key)


def _reference(engine, experiment: str, version: str, window_s: float = 3600.0):
    """Per-user metrics recomputed in Python from the raw rows (no SQL aggregation)."""
    with engine.connect() as conn:
        exp = conn.execute(select(exposures)).mappings().all()
        likes = conn.execute(select(feed).where(feed.c.action == "like")).mappings().all()
    liked_at = defaultdict(list)
    for lk in likes:
        liked_at[(lk["user_id"], lk["post_id"])].append(lk["timestamp"])
    w = timedelta(seconds=window_s)

    def sums(rows):
        out = defaultdict(lambda: [0, 0, 0, 0])  # n_exp, n_items, hits, liked
        for e in rows:
            n_liked = sum(
                any(e["ts"] <= t < e["ts"] + w for t in liked_at[(e["user_id"], p)])
                for p in e["post_ids"]
            )
            s = out[(e["exp_group"], e["user_id"])]
            s[0] += 1
            s[1] += len(e["post_ids"])
            s[2] += n_liked > 0
            s[3] += n_liked
        return out

    phase = [e for e in exp if e["experiment"] == experiment and e["config_version"] == version]
    lo, hi = min(e["ts"] for e in phase), max(e["ts"] for e in phase)
    users = {e["user_id"] for e in phase}
    pre = sums(
        {**e, "exp_group": "_"}
        for e in exp
        if e["user_id"] in users and lo - (hi - lo) <= e["ts"] < lo
    )
    arms = defaultdict(lambda: defaultdict(list))
    for (group, user), (n, items, hits, liked) in sorted(sums(phase).items()):
        pn, _, phits, _ = pre.get(("_", user), [0, 0, 0, 0])
        a = arms[group]
        a["hr"].append(hits / n)
        a["liked"].append(liked)
        a["items"].append(items)
        a["lr"].append(liked / items)
        a["conv"].append(int(hits > 0))
        a["pre_hr"].append(phits / pn if pn else 0.0)
    return {g: {k: np.array(v, dtype=float) for k, v in d.items()} for g, d in arms.items()}


def test_metrics_and_tests_match_scipy_on_reference_per_user_values(engine):
    with engine.begin() as conn:
        version = insert_phase(conn, "feedx", _spec(), seed=3)
    phase = analyze(engine, "feedx", options=OPTS)["phases"][0]
    ref = _reference(engine, "feedx", version)
    a, b = ref["control"], ref["test"]
    assert phase["users"] == {"control": a["hr"].size, "test": b["hr"].size}

    hr = _metric(phase, "hitrate")
    welch = stats.ttest_ind(b["hr"], a["hr"], equal_var=False)
    ci = welch.confidence_interval()
    assert hr["test"]["mean_control"] == pytest.approx(a["hr"].mean(), abs=1e-12)
    assert hr["test"]["p_value"] == pytest.approx(welch.pvalue, abs=TOL)
    assert (hr["test"]["ci_low"], hr["test"]["ci_high"]) == pytest.approx(
        (ci.low, ci.high), abs=TOL
    )
    mwu = stats.mannwhitneyu(a["hr"], b["hr"], method="asymptotic")
    assert hr["mann_whitney"]["p_value"] == pytest.approx(mwu.pvalue, abs=TOL)

    x = np.concatenate([a["pre_hr"], b["pre_hr"]])
    y = np.concatenate([a["hr"], b["hr"]])
    theta = np.cov(y, x)[0, 1] / x.var(ddof=1)
    assert theta != 0  # the pre-period carries signal in this world
    adj = [d["hr"] - theta * (d["pre_hr"] - x.mean()) for d in (a, b)]
    cuped = stats.ttest_ind(adj[1], adj[0], equal_var=False)
    assert hr["cuped"]["theta"] == pytest.approx(theta, abs=TOL)
    assert hr["cuped"]["p_value"] == pytest.approx(cuped.pvalue, abs=TOL)

    likes = _metric(phase, "likes_per_user")
    ref_likes = stats.ttest_ind(b["liked"], a["liked"], equal_var=False)
    assert likes["test"]["p_value"] == pytest.approx(ref_likes.pvalue, abs=TOL)

    conv = _metric(phase, "converted")
    _, p_conv = proportions_ztest(
        [b["conv"].sum(), a["conv"].sum()], [b["conv"].size, a["conv"].size]
    )
    assert conv["test"]["p_value"] == pytest.approx(p_conv, abs=TOL)

    with engine.connect() as conn:
        lat = conn.execute(
            select(exposures.c.latency_ms).where(
                exposures.c.config_version == version, exposures.c.exp_group == "test"
            )
        ).scalars()
        lat = np.sort(np.fromiter(lat, dtype=float))
    guard = phase["guardrails"]["test"]
    assert guard["latency_p50_ms"] == lat[int(np.ceil(0.5 * lat.size)) - 1]
    assert guard["latency_p95_ms"] == lat[int(np.ceil(0.95 * lat.size)) - 1]

    lr = _metric(phase, "like_rate")
    pseudo = []
    for d in (b, a):
        r = d["liked"].sum() / d["items"].sum()
        pseudo.append(DescrStatsW(r + (d["liked"] - r * d["items"]) / d["items"].mean()))
    _, p_lr = CompareMeans(*pseudo).ztest_ind(usevar="unequal")
    assert lr["test"]["p_value"] == pytest.approx(p_lr, abs=TOL)


def test_sqlite_and_postgres_give_identical_results(sqlite_url, pg_url):
    reports = []
    for url in (sqlite_url, pg_url):
        eng = migrated(url)
        with eng.begin() as conn:
            insert_phase(conn, "feedx", _spec(users=200), seed=5)
        report = analyze(eng, "feedx", options=OPTS)
        eng.dispose()
        report.pop("generated_at")
        for phase in report["phases"]:
            phase.pop("timings_s")
        reports.append(report)
    _assert_close(reports[0], reports[1])


def _assert_close(x, y, path="report"):
    if isinstance(x, dict):
        assert set(x) == set(y), path
        for k in x:
            _assert_close(x[k], y[k], f"{path}.{k}")
    elif isinstance(x, list):
        assert len(x) == len(y), path
        for i, (u, v) in enumerate(zip(x, y, strict=True)):
            _assert_close(u, v, f"{path}[{i}]")
    elif isinstance(x, float):
        assert x == pytest.approx(y, rel=1e-9, abs=1e-12, nan_ok=True), path
    else:
        assert x == y, path


def test_attribution_window_edges(engine):
    """Hit iff the user liked a served post in [ts, ts + window): not before, not at the end,
    not another post, not another user."""
    with engine.begin() as conn:
        version = insert_phase(conn, "edge", _spec(users=2, exposures_per_user=0), pre_period=False)
        rows = []
        for k, (user, arm) in enumerate([(1, "control"), (2, "test"), (3, "control"), (4, "test")]):
            for j in range(5):
                rows.append((f"{k}-{j}", user, arm, T0 + timedelta(hours=3 * j + 10 * k)))
        conn.execute(
            insert(exposures),
            [
                dict(
                    request_id=rid,
                    ts=ts,
                    served_at=ts,
                    user_id=u,
                    experiment="edge",
                    config_version=version,
                    exp_group=arm,
                    model=arm,
                    post_ids=[100, 200],
                    fallback=False,
                    latency_ms=1.0,
                )
                for rid, u, arm, ts in rows
            ],
        )
        conn.execute(
            insert(exposure_items),
            [
                dict(request_id=rid, position=i, post_id=p, user_id=u, ts=ts)
                for rid, u, _, ts in rows
                for i, p in enumerate([100, 200])
            ],
        )
        first = {u: ts for rid, u, _, ts in rows if rid.endswith("-0")}
        likes = [
            (1, 100, first[1]),  # at ts: hit
            (1, 200, first[1] + timedelta(minutes=59, seconds=59)),  # same exposure, 2nd post
            (2, 100, first[2] + timedelta(hours=1)),  # exactly at ts + window: no hit
            (2, 100, first[2] - timedelta(seconds=1)),  # before the exposure: no hit
            (3, 999, first[3] + timedelta(minutes=5)),  # post not served: no hit
            (1, 100, first[4] + timedelta(minutes=5)),  # another user's like at user 4's time
        ]
        conn.execute(
            insert(feed),
            [dict(timestamp=t, user_id=u, post_id=p, action="like") for u, p, t in likes],
        )
    phase = analyze(engine, "edge", options=OPTS)["phases"][0]
    hr = _metric(phase, "hitrate")["test"]
    liked = _metric(phase, "likes_per_user")["test"]
    assert phase["users"] == {"control": 2, "test": 2}
    assert hr["mean_control"] == pytest.approx((1 / 5 + 0) / 2)  # user 1: 1 of 5 exposures
    assert hr["mean_test"] == 0.0
    assert liked["mean_control"] == pytest.approx(2 / 2)  # both posts of user 1's exposure


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
    phases = report["phases"]
    assert [p["config"]["config_version"] for p in phases] == [v1, v2]
    assert [p["config"]["arms"][0]["weight"] for p in phases] == [90, 10]
    assert all(_metric(p, "hitrate")["test"]["diff"] > 0 for p in phases)
    assert all(not p["srm"]["flagged"] for p in phases)
    assert "never pool" in report["notes"][0]

    pooled = analyze_versions(engine, "simpson", [v1, v2], OPTS)
    assert _metric(pooled, "hitrate")["test"]["diff"] < 0  # Simpson's paradox
    assert pooled["srm"]["flagged"]  # pooled users no longer match either split
    with pytest.raises(PoolingRefused, match="Simpson"):
        analyze(engine, "simpson", options=OPTS, pool=True)
    only = analyze(engine, "simpson", phase=v2, options=OPTS)
    assert [p["config"]["config_version"] for p in only["phases"]] == [v2]


def test_srm_in_data_is_flagged_and_overrides_the_verdict(sqlite_url):
    eng = migrated(sqlite_url)
    with eng.begin() as conn:
        # users split 70/30; then their exposures are relabelled with a config saying 50/50
        insert_phase(conn, "skew", _spec(weights={"control": 70, "test": 30}, users=600), seed=4)
        lying = store_config(conn, config_yaml("skew", "salt-1", {"control": 50, "test": 50}), T0)
        conn.execute(
            exposures.update().where(exposures.c.experiment == "skew").values(config_version=lying)
        )
    phase = analyze(eng, "skew", options=OPTS)["phases"][0]
    eng.dispose()
    assert phase["srm"]["flagged"]
    assert phase["srm"]["p_value"] < 1e-3
    assert phase["comparisons"][0]["verdict"]["status"] == "invalid"
    assert any("SRM" in w for w in phase["warnings"])


def test_daily_cumulative_series_and_sequential_test(sqlite_url):
    eng = migrated(sqlite_url)
    with eng.begin() as conn:
        insert_phase(conn, "daily", _spec(days=4, users=300), seed=8)
    phase = analyze(eng, "daily", options=Options(n_boot=100, planned_users=600))["phases"][0]
    eng.dispose()
    days = [p["day"] for p in phase["daily"]]
    assert days == sorted(days) and len(days) >= 4
    last = phase["daily"][-1]["hitrate"]
    assert last["diff"] == pytest.approx(_metric(phase, "hitrate")["test"]["diff"], abs=1e-9)
    seq = phase["comparisons"][0]["sequential"]
    assert len(seq["boundaries"]) == len(seq["z"]) >= 4
    assert not seq["complete"]  # 300 of a planned 600 users
    assert seq["boundaries"][0] > seq["boundaries"][-1]
    assert phase["comparisons"][0]["verdict"]["basis"].startswith("group-sequential")


def test_cli_json_table_and_plan(sqlite_url, tmp_path):
    eng = migrated(sqlite_url)
    with eng.begin() as conn:
        insert_phase(conn, "clix", _spec(users=100), seed=9)
    eng.dispose()
    runner = CliRunner()
    out = tmp_path / "r.json"
    res = runner.invoke(
        app,
        [
            "analyze",
            "clix",
            "--url",
            sqlite_url,
            "--format",
            "json",
            "--out",
            str(out),
            "--bootstrap",
            "100",
            "--window",
            "30m",
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["window_s"] == 1800 and data["phases"][0]["srm"]["flagged"] is False
    res = runner.invoke(app, ["analyze", "clix", "--url", sqlite_url, "--bootstrap", "100"])
    assert res.exit_code == 0 and "hitrate" in res.output and "guardrails" in res.output
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
    assert json.loads(res.output)["n_control"] == 57760
