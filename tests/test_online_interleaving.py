"""Interleaving analysis on SQLite and PostgreSQL: credits by the latest exposure within the
window (checked by hand and against a Python reference on random logs), the team balance
check, `feedlab analyze` dispatching to it, and the plan from a pilot."""

from __future__ import annotations

import json
import os
import random
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from feedlab.analysis.online.interleaving import analyze_interleaving, user_credits
from feedlab.analysis.report.interleaving import render_interleaving_html
from feedlab.storage.schema import experiment_configs, exposure_items, exposures, feed
from sqlalchemy import Engine, insert
from typer.testing import CliRunner

from feedlab.cli import app
from tests.support.interleaving import reference_credits
from tests.support.screenshot import dump_dom

CONFIG = """default_model: popular
experiments:
  - name: il
    status: running
    salt: il
    traffic: 100
    design: interleaving
    arms:
      - {name: control, model: popular}
      - {name: test, model: random}
"""
T = datetime(2024, 2, 1, 10)


def store(
    engine: Engine, served: list[tuple], likes: list[tuple], qa: frozenset[str] = frozenset()
) -> None:
    """served: (request_id, user, minutes, [(post, team)], fallback); likes: (user, post, min);
    qa: the request ids served as QA requests."""
    exp_rows, item_rows = [], []
    for rid, user, minutes, posts, fallback in served:
        ts = T + timedelta(minutes=minutes)
        exp_rows.append(
            dict(
                request_id=rid,
                ts=ts,
                served_at=ts,
                user_id=user,
                experiment="il",
                config_version="v1",
                exp_group="interleaved",
                model="interleaved",
                post_ids=[p for p, _ in posts],
                fallback=fallback,
                seed=7,
                qa=rid in qa,
            )
        )
        item_rows += [
            dict(request_id=rid, position=k, post_id=p, user_id=user, ts=ts, team=team)
            for k, (p, team) in enumerate(posts)
        ]
    with engine.begin() as conn:
        conn.execute(
            insert(experiment_configs), [dict(config_version="v1", loaded_at=T, yaml=CONFIG)]
        )
        conn.execute(insert(exposures), exp_rows)
        conn.execute(insert(exposure_items), item_rows)
        if likes:
            conn.execute(
                insert(feed),
                [
                    dict(timestamp=T + timedelta(minutes=m), user_id=u, post_id=p, action="like")
                    for u, p, m in likes
                ],
            )


def test_credits_go_to_the_latest_exposure_within_the_window(engine: Engine) -> None:
    store(
        engine,
        [
            ("r1", 1, 0, [(11, "control"), (12, "test")], False),
            ("r2", 1, 20, [(12, "control"), (13, "test")], False),
            ("r3", 2, 0, [(21, "test"), (22, "control")], False),
            ("r4", 2, 60, [(23, "test")], True),
            ("r5", 3, 0, [(31, "control"), (32, "test")], False),
        ],
        [
            (1, 11, 10),  # r1: control
            (1, 12, 30),  # shown by r1 (test) and r2 (control): the latest, r2, takes it
            (1, 13, 120),  # 100 min after r2: outside the 1 h window
            (2, 21, 5),  # r3: test
            (2, 22, -1),  # before it was shown
            (2, 23, 61),  # a fallback list credits nobody
        ],
    )
    with engine.connect() as conn:
        credits = user_credits(conn, "il", "v1", ("control", "test"), 3600)
    assert credits.user_ids.tolist() == [1, 2, 3]
    assert credits.control.tolist() == [2, 0, 0]
    assert credits.test.tolist() == [0, 1, 0]
    assert reference_credits(engine, "il") == {1: {"control": 2}, 2: {"test": 1}, 3: {}}
    (phase,) = analyze_interleaving(engine, "il", n_boot=100)["phases"]
    pref = phase["preference"]
    assert (pref["wins"], pref["ties"], pref["losses"]) == (1, 1, 1)
    assert (phase["exposures"], phase["fallbacks"]) == (5, 1)
    assert [(b["control"], b["test"]) for b in phase["balance"]] == [(3, 1), (1, 3)]


def test_qa_exposures_are_never_analysed(engine: Engine) -> None:
    """QA requests count no user, exposure or team, and a QA re-serve of a post takes the
    credit of a later like away instead of handing it to the older exposure."""
    served = [
        ("r1", 1, 0, [(11, "control"), (12, "test")], False),
        ("r2", 2, 0, [(21, "test"), (22, "control")], False),
    ]
    qa_served = [
        ("q1", 1, 20, [(12, "control"), (11, "test")], False),  # re-serves 11 and 12
        ("q2", 9, 5, [(91, "test"), (92, "control")], False),  # a QA-only user
    ]
    likes = [(1, 11, 30), (1, 12, 10), (2, 21, 5), (9, 91, 6)]
    store(engine, served + qa_served, likes, qa=frozenset({"q1", "q2"}))
    with engine.connect() as conn:
        credits = user_credits(conn, "il", "v1", ("control", "test"), 3600)
    assert credits.user_ids.tolist() == [1, 2]
    # (1, 12) at 10 min: before the QA re-serve, r1's test; (1, 11) at 30 min: q1's, dropped
    assert credits.control.tolist() == [0, 0]
    assert credits.test.tolist() == [1, 1]
    (phase,) = analyze_interleaving(engine, "il", n_boot=100)["phases"]
    assert (phase["exposures"], phase["qa_exposures_excluded"]) == (2, 2)
    assert phase["credited_likes"] == {"control": 0, "test": 2}
    assert [(b["control"], b["test"]) for b in phase["balance"]] == [(1, 1), (1, 1)]


def random_log(seed: int, users: int = 60) -> tuple[list[tuple], list[tuple]]:
    rng = random.Random(seed)
    served, likes = [], []
    for u in range(1, users + 1):
        for r in range(rng.randint(1, 5)):
            posts = rng.sample(range(1, 25), 4)
            teams = rng.choice([["control", "test"], ["test", "control"]]) * 2
            minutes = rng.randint(0, 600)
            served.append(
                (f"u{u}r{r}", u, minutes, list(zip(posts, teams, strict=True)), rng.random() < 0.1)
            )
            likes += [(u, p, minutes + rng.randint(-10, 90)) for p in posts if rng.random() < 0.3]
    return served, likes


def test_sql_credits_match_the_python_reference_on_a_random_log(engine: Engine) -> None:
    store(engine, *random_log(5))
    with engine.connect() as conn:
        credits = user_credits(conn, "il", "v1", ("control", "test"), 3600)
    ref = reference_credits(engine, "il")
    assert sorted(ref) == credits.user_ids.tolist()
    assert credits.control.tolist() == [ref[u].get("control", 0) for u in sorted(ref)]
    assert credits.test.tolist() == [ref[u].get("test", 0) for u in sorted(ref)]
    assert credits.control.sum() + credits.test.sum() > 20


def test_imbalanced_teams_make_the_verdict_invalid(engine: Engine) -> None:
    """Test always first in the first (complete) round: flagged, whatever the cut last round."""
    posts = [(1, "test"), (2, "control"), (3, "control")]
    served = [(f"r{k}", k, 0, posts, False) for k in range(200)]
    store(engine, served, [])
    (phase,) = analyze_interleaving(engine, "il", n_boot=50)["phases"]
    assert [(b["control"], b["test"]) for b in phase["balance"]] == [(0, 200), (200, 0)]
    assert phase["balance_flagged"] is True
    assert phase["verdict"]["status"] == "invalid"


def test_a_round_cut_short_is_not_an_imbalance(engine: Engine) -> None:
    """Lists of 3 whose lone last pick is always test's (as when control runs out of posts
    mid-round): the cut round is left out, the whole round before it is checked."""
    served = [
        (f"r{k}", k, 0, [(1, first), (2, second), (3, "test")], False)
        for k, (first, second) in enumerate([("control", "test"), ("test", "control")] * 100)
    ]
    store(engine, served, [])
    (phase,) = analyze_interleaving(engine, "il", n_boot=50)["phases"]
    assert [(b["control"], b["test"]) for b in phase["balance"]] == [(100, 100), (100, 100)]
    assert phase["balance_flagged"] is False
    assert phase["verdict"]["status"] != "invalid"


def test_analyze_command_dispatches_and_plans_from_a_pilot(db_url: str, engine: Engine) -> None:
    store(engine, *random_log(6, users=120))
    runner = CliRunner()
    out = runner.invoke(app, ["analyze", "il", "--url", db_url, "--format", "json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["design"] == "interleaving"
    pref = report["phases"][0]["preference"]
    assert pref["delta_ci_low"] <= pref["delta"] <= pref["delta_ci_high"]
    assert 0 <= pref["share_ci_low"] <= pref["share"] <= pref["share_ci_high"] <= 1
    table = runner.invoke(app, ["analyze", "il", "--url", db_url])
    assert table.exit_code == 0 and "team balance per rank" in table.stdout
    plan = runner.invoke(
        app,
        [
            "analyze",
            "--plan",
            "--design",
            "interleaving",
            "--pilot",
            "il",
            "--url",
            db_url,
            "--delta",
            "0.1",
            "--format",
            "json",
        ],
    )
    assert plan.exit_code == 0, plan.output
    planned = json.loads(plan.stdout)
    assert planned["delta_sd"] == pytest.approx(pref["delta_sd"])
    assert planned["pilot_users"] == 120
    assert planned["users"] == pytest.approx((2.8016 * pref["delta_sd"] / 0.1) ** 2, rel=0.01)
    missing = runner.invoke(app, ["analyze", "--plan", "--design", "interleaving"])
    assert missing.exit_code == 2 and "--pilot" in missing.output


def test_html_report_in_headless_chromium(engine: Engine, tmp_path: Path) -> None:
    """Verdict first, the preference with its CI, team balance per rank as an SVG plot."""
    if shutil.which("chromium") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is required in CI (apt-get install -y chromium)")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    store(engine, *random_log(7, users=80))
    report = analyze_interleaving(engine, "il", n_boot=100)
    page = tmp_path / "report.html"
    page.write_text(render_interleaving_html(report), encoding="utf-8")
    dom = BeautifulSoup(dump_dom(page), "html.parser")
    headings = [h.get_text() for h in dom.find_all("h2")]
    assert headings[0] == "Verdict"
    verdict = dom.find(id="verdict-0")
    assert verdict is not None and verdict.b.get_text() in {"WIN", "LOSS", "INCONCLUSIVE"}
    pref = report["phases"][0]["preference"]
    cells = [td.get_text() for td in dom.find(id="preference-0").find_all("td")]
    low, high = pref["delta_ci_low"], pref["delta_ci_high"]
    assert cells[4] == f"{pref['delta']:.4g} [{low:.4g}, {high:.4g}]"
    assert cells[2].startswith(f"{pref['share']:.1%} [")
    plot = dom.find(id="balance-plot-0").find("svg")
    assert plot["aria-label"].startswith("team balance")
    assert len(plot.find_all("circle")) == len(report["phases"][0]["balance"]) == 4
    order = [str(x) for x in dom.find_all(id=["verdict-0", "preference-0", "balance-plot-0"])]
    assert [o.split('id="')[1].split('"')[0] for o in order] == [
        "verdict-0",
        "preference-0",
        "balance-plot-0",
    ]
