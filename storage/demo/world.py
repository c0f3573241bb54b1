"""The demo world: users, posts and a feed history drawn from a hidden preference model.

Everything follows from a `WorldSpec` (seed, sizes, days, optional real posts CSV, start time,
model parameters). `feedlab demo-data` writes the spec as JSON (`--spec-out`, default
`demo_world.json`); whoever needs the hidden model later (the traffic simulator) rebuilds it:

    spec = WorldSpec.load("demo_world.json")
    model = spec.preference_model()          # users + posts + hidden params, no history
    p = model.like_probability(user_ids, post_ids, at)

Each part draws from its own child of `SeedSequence(seed)`, so the model can be rebuilt without
replaying the history and the same spec always gives byte-identical tables.

History: views at times spread over `days` with a daily cycle (peak in the evening), each
logged as a real feed is, mostly by the recommender that served it (`storage.demo.policy`):
`recommender_share` of every user's views by a taste-aware recommender (the best of
`recommender_pool` browsed posts by hidden like logit plus `recommender_noise` x Gumbel noise),
the rest by browsing (uniform among posts already created with probability `explore_share`,
else weighted by a per-post popularity). So the posts a user was shown, and hence could like,
lean towards their taste, and an offline protocol rewards a model that knows it, as the online
experiment does. A user sees a post at most once (later repeats are dropped). Each view is
liked with the model's probability; a like follows its view by 1–300 s and sets the view's
target to 1. The recommender draws from its own stream: with `recommender_share` 0 the history
is the browsing policy's alone, the same tables as before the recommender existed.

A world of the real size (163k users, ~77M events) does not fit in memory at once: with
`chunk_users` set, the history is drawn a chunk of users at a time from the same hidden model and
logging policy (`stream_history`) and each chunk is copied into the database before the next.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from feedlab.storage import schema
from feedlab.storage.demo.policy import (
    RECOMMENDER_NOISE,
    RECOMMENDER_POOL,
    RECOMMENDER_SHARE,
    browsing_picks,
    taste_aware_picks,
)
from feedlab.storage.demo.preferences import PreferenceModel, PreferenceParams
from feedlab.storage.demo.texts import PostTexts, generated_posts, real_posts
from feedlab.storage.importing import ImportSummary, checked, load_world
from feedlab.storage.validation import Rows
from sqlalchemy import Engine

COUNTRIES = {  # country: (weight, cities by size)
    "Russia": (0.55, ["Moscow", "Saint Petersburg", "Novosibirsk", "Yekaterinburg", "Kazan"]),
    "Ukraine": (0.12, ["Kyiv", "Kharkiv", "Odesa", "Lviv"]),
    "Belarus": (0.08, ["Minsk", "Gomel", "Brest"]),
    "Kazakhstan": (0.08, ["Almaty", "Astana", "Shymkent"]),
    "Turkey": (0.07, ["Istanbul", "Ankara", "Izmir"]),
    "Finland": (0.05, ["Helsinki", "Espoo", "Tampere"]),
    "Cyprus": (0.05, ["Limassol", "Nicosia"]),
}
OS_SHARE = {"Android": 0.65, "iOS": 0.35}
SOURCE_SHARE = {"organic": 0.55, "ads": 0.45}
HOURLY = 1.0 + 0.8 * np.cos(2 * np.pi * (np.arange(24) - 20) / 24)  # evening peak
STREAMS = ("users", "posts", "model", "history", "recommender")
"""Random streams, one per part; a new part goes last so the earlier ones keep their draws."""


@dataclass
class WorldSpec:
    """Everything that determines a demo world."""

    seed: int = 0
    n_users: int = 5000
    n_posts: int = 2000
    days: int = 28
    posts_csv: str | None = None
    start: str = "2024-01-01T00:00:00"
    views_per_user_day: float = 3.45
    explore_share: float = 0.4  # share of views picked uniformly at random, the rest by popularity
    popularity_sigma: float = 1.0
    old_posts_share: float = 0.3  # posts created in the 30 days before `start`
    recommender_share: float = RECOMMENDER_SHARE  # views logged by the taste-aware recommender
    recommender_pool: int = RECOMMENDER_POOL
    recommender_noise: float = RECOMMENDER_NOISE
    # None: the history is drawn at once, in memory; N: streamed in chunks of N users
    chunk_users: int | None = None
    params: PreferenceParams = field(default_factory=PreferenceParams)

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> WorldSpec:
        data = json.loads(Path(path).read_text())
        return cls(**{**data, "params": PreferenceParams(**data.get("params", {}))})

    def rng(self, stream: str) -> np.random.Generator:
        child = np.random.SeedSequence(self.seed).spawn(len(STREAMS))[STREAMS.index(stream)]
        return np.random.default_rng(child)

    @property
    def start_time(self) -> np.datetime64:
        return np.datetime64(datetime.fromisoformat(self.start), "s")

    def preference_model(self) -> PreferenceModel:
        """The hidden model alone (no history), identical to `World.build(self).model`."""
        return _population(self)[2]


@dataclass
class World:
    spec: WorldSpec
    users: pd.DataFrame
    posts: pd.DataFrame
    feed: pd.DataFrame
    model: PreferenceModel
    texts: PostTexts

    @classmethod
    def build(cls, spec: WorldSpec) -> World:
        users, posts, model, texts = _population(spec)
        feed = _history(spec, model, posts)
        return cls(spec, users, posts, feed, model, texts)


def _population(spec: WorldSpec) -> tuple[pd.DataFrame, pd.DataFrame, PreferenceModel, PostTexts]:
    users = _users(spec.rng("users"), spec.n_users)
    rng = spec.rng("posts")
    if spec.posts_csv:
        texts = real_posts(Path(spec.posts_csv), rng, spec.n_posts, seed=spec.seed)
    else:
        texts = generated_posts(rng, spec.n_posts)
    n_posts = len(texts.text)
    created = _post_times(rng, spec, n_posts)
    posts = pd.DataFrame(
        {
            "post_id": np.arange(1, n_posts + 1, dtype=np.int64),
            "text": texts.text,
            "topic": texts.topic,
            "created_at": created.astype("datetime64[us]"),
        }
    )
    model = PreferenceModel.sample(
        spec.rng("model"),
        spec.params,
        user_ids=users["user_id"].to_numpy(),
        age=users["age"].to_numpy(),
        gender=users["gender"].to_numpy(),
        post_ids=posts["post_id"].to_numpy(),
        post_topic=texts.topic,
        post_subtheme=texts.subtheme,
        post_created=created,
        subthemes_per_topic={t: len(names) for t, names in texts.subthemes.items()},
    )
    return users, posts, model, texts


def _users(rng: np.random.Generator, n: int) -> pd.DataFrame:
    names = list(COUNTRIES)
    weights = np.asarray([COUNTRIES[c][0] for c in names])
    country = rng.choice(len(names), size=n, p=weights / weights.sum())
    city = []
    for k in country:
        cities = COUNTRIES[names[k]][1]
        zipf = 1.0 / np.arange(1, len(cities) + 1)
        city.append(cities[rng.choice(len(cities), p=zipf / zipf.sum())])
    return pd.DataFrame(
        {
            "user_id": np.arange(1, n + 1, dtype=np.int64),
            "age": np.clip(np.round(14 + rng.gamma(4.0, 6.0, n)), 14, 80).astype(np.int64),
            "gender": rng.choice(["F", "M"], size=n),
            "country": [names[k] for k in country],
            "city": city,
            "os": rng.choice(list(OS_SHARE), size=n, p=list(OS_SHARE.values())),
            "source": rng.choice(list(SOURCE_SHARE), size=n, p=list(SOURCE_SHARE.values())),
            "attributes": None,
        }
    )


def _post_times(rng: np.random.Generator, spec: WorldSpec, n: int) -> np.ndarray:
    """Creation times: a share before the history starts, the rest spread over its days."""
    old = rng.random(n) < spec.old_posts_share
    seconds = np.where(
        old,
        -rng.uniform(0, 30 * 86400, n),
        rng.uniform(0, spec.days * 86400 * 0.95, n),
    )
    return spec.start_time + seconds.astype(np.int64).astype("timedelta64[s]")


def _history(spec: WorldSpec, model: PreferenceModel, posts: pd.DataFrame) -> pd.DataFrame:
    rng = spec.rng("history")
    n_users = len(model.user_ids)
    n_views = round(spec.views_per_user_day * n_users * spec.days)
    activity = rng.lognormal(0.0, 0.8, n_users)
    user_pos = rng.choice(n_users, size=n_views, p=activity / activity.sum())
    at = _view_times(spec, rng, n_views)
    popularity = _popularity(spec, rng, len(model.post_ids))
    return _feed_rows(spec, model, rng, spec.rng("recommender"), user_pos, at, popularity)


def stream_history(spec: WorldSpec, model: PreferenceModel) -> Iterator[pd.DataFrame]:
    """The history in chunks of `spec.chunk_users` users, each chunk's feed frame in time order:
    memory is bounded by a chunk, not by the whole history. Each user's expected number of views
    is the same as in `_history` (activity share x views per user-day x days x users); the count
    is drawn per user (Poisson) instead of one global multinomial, so chunks are independent."""
    if not spec.chunk_users:
        raise ValueError("chunk_users: a streamed world needs a chunk size")
    rng = spec.rng("history")
    n_users = len(model.user_ids)
    activity = rng.lognormal(0.0, 0.8, n_users)
    popularity = _popularity(spec, rng, len(model.post_ids))
    expected = spec.views_per_user_day * spec.days * n_users * activity / activity.sum()
    logger = spec.rng("recommender")
    for lo in range(0, n_users, spec.chunk_users):
        hi = min(lo + spec.chunk_users, n_users)
        user_pos = np.repeat(np.arange(lo, hi), rng.poisson(expected[lo:hi]))
        at = _view_times(spec, rng, len(user_pos))
        yield _feed_rows(spec, model, rng, logger, user_pos, at, popularity)


def _view_times(spec: WorldSpec, rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` view times spread over the days, with the daily cycle (`HOURLY`)."""
    day = rng.integers(0, spec.days, n)
    hour = rng.choice(24, size=n, p=HOURLY / HOURLY.sum())
    second = day * 86400 + hour * 3600 + rng.integers(0, 3600, n)
    return spec.start_time + second.astype("timedelta64[s]")


def _popularity(spec: WorldSpec, rng: np.random.Generator, n_posts: int) -> np.ndarray:
    """The logging policy's popularity weight of each post (by creation order)."""
    return np.exp(spec.popularity_sigma * rng.standard_normal(n_posts))


def _feed_rows(
    spec: WorldSpec,
    model: PreferenceModel,
    rng: np.random.Generator,
    logger: np.random.Generator,
    user_pos: np.ndarray,
    at: np.ndarray,
    popularity: np.ndarray,
) -> pd.DataFrame:
    """Feed rows (views and their likes, in time order) of views by `user_pos` at `at`: the
    logging policy picks each view's post (the recommender's draws from `logger`), a user sees a
    post at most once, and the hidden model decides the likes."""
    n_views = len(user_pos)
    # Posts ordered by creation; a view at `at` may pick any post created before it.
    created = model.post_created
    order = np.argsort(created, kind="stable")
    eligible = np.searchsorted(created[order], at, side="right")
    keep = eligible > 0
    cum = np.cumsum(popularity[order])
    post_pos = order[browsing_picks(rng, eligible, cum, spec.explore_share)]
    chosen = np.flatnonzero(keep & (logger.random(n_views) < spec.recommender_share))
    if len(chosen) and spec.recommender_pool > 0:
        pools = order[
            browsing_picks(
                logger,
                np.repeat(eligible[chosen, None], spec.recommender_pool, axis=1),
                cum,
                spec.explore_share,
            )
        ]
        post_pos[chosen] = taste_aware_picks(
            model, logger, user_pos[chosen], at[chosen], pools, spec.recommender_noise
        )

    views = pd.DataFrame(
        {"user": user_pos[keep], "post": post_pos[keep], "timestamp": at[keep]}
    ).sort_values(["timestamp", "user", "post"], kind="stable")
    views = views.drop_duplicates(["user", "post"], keep="first")
    user_ids = model.user_ids[views["user"].to_numpy()]
    post_ids = model.post_ids[views["post"].to_numpy()]
    ts = views["timestamp"].to_numpy().astype("datetime64[s]")
    liked = rng.random(len(views)) < model.like_probability(user_ids, post_ids, ts)
    delay = rng.integers(1, 301, int(liked.sum())).astype("timedelta64[s]")

    view_rows = pd.DataFrame(
        {
            "timestamp": ts,
            "user_id": user_ids,
            "post_id": post_ids,
            "action": schema.VIEW,
            "target": liked.astype(np.int64),
        }
    )
    like_rows = pd.DataFrame(
        {
            "timestamp": ts[liked] + delay,
            "user_id": user_ids[liked],
            "post_id": post_ids[liked],
            "action": schema.LIKE,
            "target": pd.NA,
        }
    )
    feed = pd.concat([view_rows, like_rows], ignore_index=True)
    feed = feed.sort_values(["timestamp", "user_id", "post_id", "action"], kind="stable")
    feed["timestamp"] = feed["timestamp"].astype("datetime64[us]")
    return feed.astype({"target": "Int64"}).reset_index(drop=True)


def load_demo_world(spec: WorldSpec, engine: Engine, *, replace: bool = False) -> ImportSummary:
    """Build the world and load it through the importers' validation and bulk loading; with
    `spec.chunk_users` the history streams to the database a chunk of users at a time."""
    if spec.chunk_users:
        users, posts, model, _ = _population(spec)
        feed_batches = _numbered(stream_history(spec, model))
    else:
        world = World.build(spec)
        users, posts, feed_batches = world.users, world.posts, _numbered(iter([world.feed]))
    return load_world(
        engine,
        users,
        posts,
        lambda checker: checked(checker, feed_batches),
        replace=replace,
        desc="demo feed",
    )


def _numbered(frames: Iterator[pd.DataFrame]) -> Iterator[Rows]:
    """Feed frames as validation batches, rows numbered across batches."""
    first = 1
    for frame in frames:
        yield Rows("demo feed", frame, np.arange(first, first + len(frame)), unit="row")
        first += len(frame)
