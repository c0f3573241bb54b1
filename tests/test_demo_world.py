import hashlib
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from feedlab.storage import schema
from feedlab.storage.demo.policy import taste_aware_picks
from feedlab.storage.demo.preferences import demographic_group
from feedlab.storage.demo.world import World, WorldSpec, stream_history
from scipy.stats import chi2, chi2_contingency
from sqlalchemy import select
from typer.testing import CliRunner

from feedlab.cli import app
from tests.support.db import migrated

SMALL = ["--users", "300", "--posts", "150", "--days", "5"]


def table_hashes(url: str) -> dict[str, str]:
    engine = migrated(url)
    out = {}
    with engine.connect() as conn:
        for table in (schema.users, schema.posts, schema.feed):
            rows = conn.execute(select(table).order_by(*table.primary_key.columns)).all()
            out[table.name] = hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest()
    engine.dispose()
    return out


def run_demo(url: str, tmp_path, seed: int, *extra: str) -> Path:
    spec = tmp_path / f"spec_{seed}_{abs(hash(url))}.json"
    args = ["demo-data", *SMALL, "--seed", str(seed), "--url", url, "--spec-out", str(spec)]
    result = CliRunner().invoke(app, [*args, *extra])
    assert result.exit_code == 0, result.output
    return spec


def test_same_seed_same_world_on_every_backend_and_other_seed_differs(db_url, tmp_path):
    run_demo(db_url, tmp_path, seed=0)
    twin = f"sqlite:///{tmp_path / 'twin.db'}"
    run_demo(twin, tmp_path, seed=0)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    run_demo(other, tmp_path, seed=1)
    first, second, third = table_hashes(db_url), table_hashes(twin), table_hashes(other)
    assert first == second
    assert all(first[name] != third[name] for name in first)


def test_recommender_share_flag_changes_only_the_logged_feed(tmp_path):
    default = f"sqlite:///{tmp_path / 'default.db'}"
    browsing = f"sqlite:///{tmp_path / 'browsing.db'}"
    assert WorldSpec.load(run_demo(default, tmp_path, 0)).recommender_share > 0
    spec = WorldSpec.load(run_demo(browsing, tmp_path, 0, "--recommender-share", "0"))
    assert spec.recommender_share == 0
    first, second = table_hashes(default), table_hashes(browsing)
    assert first["users"] == second["users"] and first["posts"] == second["posts"]
    assert first["feed"] != second["feed"]
    bad = CliRunner().invoke(app, ["demo-data", "--recommender-share", "1.5", "--url", browsing])
    assert bad.exit_code != 0 and "--recommender-share" in bad.output


@pytest.fixture(scope="module")
def world() -> World:
    """Browsing log alone (no logging recommender): every view is blind to taste, so the views
    are an unbiased sample of the hidden model the tests below measure."""
    return World.build(WorldSpec(seed=3, n_users=3000, n_posts=800, days=14, recommender_share=0))


@pytest.fixture(scope="module")
def views(world) -> pd.DataFrame:
    feed = world.feed
    views = feed[feed["action"] == "view"].copy()
    model = world.model
    users = world.users.set_index("user_id")
    posts = model.post_index(views["post_id"])
    views["group"] = demographic_group(
        users.loc[views["user_id"], "age"].to_numpy(), users.loc[views["user_id"], "gender"]
    )
    views["topic"] = model.post_topic[posts]
    views["subtheme"] = model.post_subtheme[posts]
    views["preferred"] = model.prefers(views["user_id"], views["post_id"])
    views["liked"] = views["target"].astype(int)
    return views


def test_like_rate_is_between_10_and_20_percent(views):
    assert 0.10 <= views["liked"].mean() <= 0.20


def test_likes_depend_on_demographics_times_topic(views):
    """Interaction, not just main effects: log-likelihood ratio of group*topic vs group+topic."""
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    cells = views.groupby(["group", "topic"])["liked"].agg(["sum", "count"]).reset_index()
    cells["rate"] = cells["sum"] / cells["count"]
    additive = smf.glm(
        "rate ~ C(group) + C(topic)",
        cells,
        family=sm.families.Binomial(),
        var_weights=cells["count"],
    ).fit()
    # grouped binomial data: the additive model's deviance is the LR statistic vs the saturated
    # (interaction) model
    lr, df = additive.deviance, additive.df_resid
    assert chi2.sf(lr, df) < 1e-6


def test_within_topic_taste_is_strong_and_significant(views):
    table = pd.crosstab(views["preferred"], views["liked"])
    assert chi2_contingency(table)[1] < 1e-6
    rates = views.groupby("preferred")["liked"].mean()
    assert 2.0 <= rates[True] / rates[False] <= 4.0
    for _, topic_views in views.groupby("topic"):  # in every topic, not just on average
        by_pref = topic_views.groupby("preferred")["liked"].mean()
        assert by_pref[True] / by_pref[False] > 1.5


def test_within_topic_taste_is_invisible_from_topic_alone(views):
    """Pooled over users, every sub-theme of a topic is liked about equally often."""
    for _, topic_views in views.groupby("topic"):
        by_subtheme = topic_views.groupby("subtheme")["liked"].mean()
        by_pref = topic_views.groupby("preferred")["liked"].mean()
        spread = by_subtheme.max() - by_subtheme.min()
        assert spread < 0.35 * (by_pref[True] - by_pref[False])
        assert by_subtheme.max() / by_subtheme.min() < 1.3


def test_sub_themes_show_in_the_words_of_posts(world):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    texts = np.asarray(world.texts.text)
    topics = np.asarray(world.texts.topic)
    for topic in ("sport", "tech"):
        mask = topics == topic
        x = TfidfVectorizer().fit_transform(texts[mask])
        y = world.texts.subtheme[mask]
        accuracy = cross_val_score(LogisticRegression(max_iter=1000), x, y, cv=3).mean()
        assert accuracy > 0.8  # topic alone would give about 1/3


def test_history_shape(world, views):
    feed = world.feed
    posts = world.posts.set_index("post_id")
    created = posts.loc[feed["post_id"], "created_at"].to_numpy()
    assert (feed["timestamp"].to_numpy() >= created).all()
    assert not views.duplicated(["user_id", "post_id"]).any()
    likes = feed[feed["action"] == "like"]
    assert len(likes) == views["liked"].sum()
    joined = likes.merge(views, on=["user_id", "post_id"], suffixes=("_like", "_view"))
    assert len(joined) == len(likes) and (joined["timestamp_like"] > joined["timestamp_view"]).all()
    hours = np.bincount(views["timestamp"].dt.hour, minlength=24)
    assert hours[18:23].sum() > 2 * hours[3:8].sum()  # daily cycle, evening peak
    assert 0 < views["timestamp"].dt.day.nunique() <= 15


def test_the_logging_recommender_shows_posts_the_user_tends_to_like():
    """Same seed, so the same users, posts, hidden model and browsing draws: the views the
    recommender logs instead of browsing lean to the user's taste, and more of them are liked."""
    spec = WorldSpec(seed=4, n_users=400, n_posts=300, days=7)
    assert spec.recommender_share > 0
    shares = {}
    for name, world in (
        ("browsing", World.build(replace(spec, recommender_share=0.0))),
        ("logged", World.build(spec)),
    ):
        views = world.feed[world.feed["action"] == "view"]
        shares[name] = (
            world.model.prefers(views["user_id"], views["post_id"]),
            views["target"].astype(bool).to_numpy(),
        )
    for column, margin in ((0, 0.1), (1, 0.03)):  # preferred sub-theme share, like rate
        logged, browsing = shares["logged"][column], shares["browsing"][column]
        assert logged.mean() > browsing.mean() + margin
        table = [[logged.sum(), (~logged).sum()], [browsing.sum(), (~browsing).sum()]]
        assert chi2_contingency(table)[1] < 1e-6


def test_taste_aware_picks_take_the_best_candidate_without_noise_and_lean_to_it_with_it():
    world = World.build(WorldSpec(seed=5, n_users=200, n_posts=150, days=3, recommender_share=0))
    model = world.model
    rng = np.random.default_rng(0)
    n, k = 4000, 12
    users = rng.integers(0, len(model.user_ids), n)
    pools = rng.integers(0, len(model.post_ids), (n, k))
    at = np.full(n, np.datetime64("2024-01-03T12:00:00", "s"))
    logits = model.logit_at(users[:, None], pools, at[:, None])
    best = taste_aware_picks(model, rng, users, at, pools, noise=0.0)
    assert np.array_equal(best, pools[np.arange(n), logits.argmax(axis=1)])
    noisy = taste_aware_picks(model, rng, users, at, pools, noise=1.0)
    prefers = model.user_taste[users, model.post_topic[noisy]] == model.post_subtheme[noisy]
    random_prefers = (
        model.user_taste[users, model.post_topic[pools[:, 0]]] == (model.post_subtheme[pools[:, 0]])
    )
    assert prefers.mean() > random_prefers.mean() + 0.15
    assert (noisy != best).any()  # noise: not always the best candidate


def test_spec_file_rebuilds_the_same_preference_model(world, tmp_path):
    path = tmp_path / "world.json"
    world.spec.save(path)
    model = WorldSpec.load(path).preference_model()
    users = np.array([1, 5, 3000, 42])
    posts = np.array([800, 2, 17, 17])
    at = datetime(2024, 1, 10, 18, 30)
    expected = world.model.like_probability(users, posts, at)
    assert np.array_equal(model.like_probability(users, posts, at), expected)
    assert ((expected > 0) & (expected < 1)).all()
    with pytest.raises(KeyError, match="unknown post"):
        model.like_probability([1], [801], at)


@pytest.mark.data
def test_real_post_texts_get_sub_themes_from_their_words(shared_data):
    spec = WorldSpec(
        seed=0,
        n_users=200,
        n_posts=400,
        days=3,
        posts_csv=str(shared_data / "bbc-news" / "bbc_articles.csv.gz"),
    )
    world, again = World.build(spec), World.build(spec)
    assert set(world.posts["topic"]) == {"business", "entertainment", "politics", "sport", "tech"}
    assert all(len(names) == 3 for names in world.texts.subthemes.values())
    per_topic = pd.Series(world.texts.subtheme).groupby(world.posts["topic"]).nunique()
    assert (per_topic >= 2).all()
    assert world.posts.equals(again.posts) and world.feed.equals(again.feed)
    assert world.posts["text"].str.len().min() > 200


def test_streamed_world_draws_from_the_same_model_in_chunks_loaded_by_the_cli(db_url, tmp_path):
    """`--chunk-users`: the same hidden model, each chunk a time-ordered frame of its own users
    (a post seen at most once per user), about as many events per user as the in-memory world,
    and the CLI stores exactly the streamed rows."""
    spec = WorldSpec(seed=5, n_users=600, n_posts=150, days=10, chunk_users=250)
    whole = World.build(WorldSpec(seed=5, n_users=600, n_posts=150, days=10))
    chunks = list(stream_history(spec, spec.preference_model()))
    assert len(chunks) == 3
    for lo, chunk in zip((1, 251, 501), chunks, strict=True):
        assert chunk["user_id"].between(lo, lo + 249).all()
        assert chunk["timestamp"].is_monotonic_increasing
        views = chunk[chunk["action"] == "view"]
        assert not views.duplicated(["user_id", "post_id"]).any()
        assert (chunk["action"] == "like").sum() == views["target"].sum()
    streamed = pd.concat(chunks)
    assert 0.9 < len(streamed) / len(whole.feed) < 1.1
    liked = streamed.loc[streamed["action"] == "view", "target"].mean()
    whole_liked = whole.feed.loc[whole.feed["action"] == "view", "target"].mean()
    assert abs(liked - whole_liked) < 0.03  # same hidden model and logging policy
    args = ["demo-data", "--users", "600", "--posts", "150", "--days", "10", "--seed", "5"]
    args += ["--chunk-users", "250", "--url", db_url, "--spec-out", str(tmp_path / "w.json")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert WorldSpec.load(tmp_path / "w.json").chunk_users == 250
    engine = migrated(db_url)
    with engine.connect() as conn:
        stored = conn.execute(select(schema.feed.c.user_id, schema.feed.c.action)).all()
    engine.dispose()
    assert len(stored) == len(streamed)
    assert sum(a == "like" for _, a in stored) == (streamed["action"] == "like").sum()
