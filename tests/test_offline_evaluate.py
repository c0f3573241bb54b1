"""The offline protocol on hand-made data whose metrics are known by construction."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
from feedlab.analysis.offline.evaluate import (
    evaluate,
    evaluation_pairs,
    median_time,
    paired_difference,
    recommender_call,
)
from feedlab.models.history import History, from_us
from feedlab.storage.schema import feed, posts
from sqlalchemy import insert
from typer.testing import CliRunner

from feedlab.cli import app
from tests.support.db import migrated

T0 = datetime(2024, 3, 1)
W = timedelta(days=7)


def history() -> History:
    """Users 1-4 are active before T0. In window 1, users 1, 2 and 5 like things (5 is new:
    not a pair); in window 2, user 3 likes post 30. User 1 viewed post 30 before T0."""
    rows = [
        (T0 - timedelta(days=3), 1, 30, "view"),
        (T0 - timedelta(days=3), 2, 31, "view"),
        (T0 - timedelta(days=2), 3, 32, "like"),
        (T0 - timedelta(days=1), 4, 33, "view"),
        (T0 + timedelta(days=1), 1, 30, "like"),
        (T0 + timedelta(days=1), 1, 40, "like"),
        (T0 + timedelta(days=2), 2, 41, "like"),
        (T0 + timedelta(days=2), 5, 40, "like"),
        (T0 + timedelta(days=9), 3, 30, "like"),
    ]
    ts, users, post_ids, actions = zip(*rows, strict=True)
    return History.from_arrays(np.array(ts, "datetime64[us]"), users, post_ids, actions)


class Fixed:
    """Recommends a fixed list to everyone; no `exclude` support (the evaluator must filter)."""

    name = "fixed"
    version = "1"

    def __init__(self, posts: list[int]) -> None:
        self.posts = posts
        self.calls: list[tuple[int, datetime, int]] = []

    def recommend(self, user_id: int, at: datetime, limit: int) -> list[int]:
        self.calls.append((user_id, at, limit))
        return self.posts[:limit]


def test_pairs_follow_the_protocol():
    h = history()
    pairs = evaluation_pairs(h, T0, W)
    assert [(p.user_id, p.at) for p in pairs] == [(1, T0), (2, T0), (3, T0 + W)]
    assert pairs[0].liked == {30, 40}
    assert pairs[0].seen.tolist() == [30]


def test_hit_rate_known_by_construction():
    h = history()
    pairs = evaluation_pairs(h, T0, W)
    # user 1: 30 is excluded (viewed before T0) so 40 moves up and hits; user 2: 41 hits at
    # rank 2; user 3 (window 2): 30 is not excluded for them and hits at rank 1.
    result = evaluate(Fixed([30, 41, 40, 99]), h, pairs, k=2)
    assert result.hits.tolist() == [1.0, 1.0, 1.0]
    result = evaluate(Fixed([30, 99, 41]), h, pairs, k=2)
    assert result.hits.tolist() == [0.0, 0.0, 1.0]
    assert result.hit_rate == 1 / 3
    assert result.recall.tolist() == [0.0, 0.0, 1.0]
    ndcg = evaluate(Fixed([99, 41]), h, pairs, k=2).ndcg
    assert np.allclose(ndcg, [0.0, 1 / np.log2(3), 0.0])


def test_recommender_without_exclude_is_over_asked_and_filtered():
    model = Fixed([30, 40])
    call = recommender_call(model)
    assert call(1, T0, 1, np.array([30])) == [40]
    assert model.calls == [(1, T0, 2)]


def test_paired_difference_and_median():
    h = history()
    pairs = evaluation_pairs(h, T0, W)
    a = evaluate(Fixed([40, 41, 30]), h, pairs, k=3)
    b = evaluate(Fixed([99]), h, pairs, k=3)
    diff = paired_difference(a, b)
    assert diff["difference"] == 1.0
    assert diff["ci95"] == [1.0, 1.0]
    assert median_time(h) == T0 - timedelta(days=3)


def test_evaluate_command_json(tmp_path):
    url = f"sqlite:///{tmp_path / 'eval.db'}"
    engine = migrated(url)
    h = history().events_between(None, None)
    rows = []
    for ts, u, p, like in zip(h.ts, h.user_ids, h.post_ids, h.is_like, strict=True):
        rows.append(
            {
                "timestamp": from_us(ts),
                "user_id": int(u),
                "post_id": int(p),
                "action": "like" if like else "view",
                "target": None if like else 0,
            }
        )
    with engine.begin() as conn:
        conn.execute(insert(feed), rows)
        conn.execute(
            insert(posts),
            [{"post_id": int(p), "text": f"post {p}"} for p in sorted(set(h.post_ids))],
        )
    engine.dispose()
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--url",
            url,
            "--t0",
            T0.isoformat(),
            "--json",
            "--compare",
            "popular",
            "random",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["protocol"]["pairs"] == 3
    assert [r["model"] for r in report["results"]] == ["random", "popular-all", "popular"]
    assert report["comparison"]["a"] == "popular"
    args = ["evaluate", "--url", url, "--t0", T0.isoformat(), "--json", "--model", "popular:x"]
    again = CliRunner().invoke(app, [*args, "--compare", "popular", "random"])
    assert again.exit_code == 0, again.output
    assert len(json.loads(again.output)["results"]) == 3  # baselines are never duplicated
    bad = CliRunner().invoke(app, ["evaluate", "--url", url, "--model", "nope"])
    assert bad.exit_code != 0
    assert "unknown model" in bad.output


def test_an_arm_significantly_below_popular_is_flagged():
    """On the ranker test world, a model recommending posts nobody can like (ids outside the
    catalog: no hit by construction) is significantly below `popular` and flagged; `popular`
    against itself is not."""
    from dataclasses import replace

    from feedlab.analysis.offline.report import below_popular_text, versus_popular
    from feedlab.models.registry import load_model

    from tests.support.ranker_world import T0 as WORLD_T0
    from tests.support.ranker_world import world

    events, catalog, _ = world()
    pairs = evaluation_pairs(events, WORLD_T0, W)
    popular = evaluate(load_model("popular", None, events), events, pairs)
    outside = len(catalog) + 1000
    worst = evaluate(Fixed(list(range(outside, outside + 10))), events, pairs)
    assert worst.hit_rate == 0 < popular.hit_rate
    same = replace(popular, model="popular-again")
    flags = versus_popular([worst, same], popular)
    assert [f["a"] for f in flags] == ["fixed", "popular-again"]
    assert flags[0]["ci95"][1] < 0 and flags[0]["significantly_below"]
    assert flags[1]["difference"] == 0 and not flags[1]["significantly_below"]
    lines = below_popular_text({"versus_popular": flags})
    assert lines[0].startswith("WARNING: fixed is significantly below popular")
    assert lines[1].startswith("popular-again - popular: HitRate difference +0.000")
    # when another baseline is the best, the arms are also set against it
    best = versus_popular([worst], replace(popular, model="popular-all"))
    lines = below_popular_text({"versus_popular": flags, "versus_best_baseline": best})
    assert len(lines) == 3
    assert lines[2].startswith("WARNING: fixed is significantly below popular-all: fixed - ")


def test_retrain_every_needs_a_duration_with_its_unit(tmp_path):
    url = f"sqlite:///{tmp_path / 'none.db'}"
    result = CliRunner().invoke(app, ["evaluate", "--url", url, "--retrain-every", "7"])
    assert result.exit_code != 0
    assert "--retrain-every: a positive duration with its unit" in result.output
