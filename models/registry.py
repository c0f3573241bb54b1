"""Model names → loaded `Recommender`s: what the gateway (and `feedlab evaluate`) call.

An arm package (`models.control`, `models.test`) exposes
`load(artifact_dir: Path, history: History, posts: PostCatalog | None = None,
users: UserProfiles | None = None) -> Recommender` (`users` passed only when given);
it is imported lazily so loading one arm never imports the other. `posts` is the current post
catalog (e.g. `PostCatalog.from_engine`) so posts newer than the artifact can be served; None
means "the posts stored in the artifact".
"""

from __future__ import annotations

import importlib
from pathlib import Path

from feedlab.models.base import Recommender
from feedlab.models.catalog import PostCatalog, UserProfiles
from feedlab.models.history import History
from feedlab.models.popular import PopularRecommender, RandomRecommender
from feedlab.models.refit import serve_in_background
from feedlab.storage.clock import utcnow

ARMS = ("control", "test")
BASELINES = ("popular", "popular-all", "random")
MODEL_NAMES = BASELINES + ARMS


def load_model(
    name: str,
    artifact: str | Path | None,
    history: History,
    posts: PostCatalog | None = None,
    users: UserProfiles | None = None,
) -> Recommender:
    """Load model `name` (popular | popular-all | random | control | test) on `history`.
    `users`: live user profiles (arms default to the ones stored in their artifact)."""
    if name == "popular":
        return PopularRecommender(history)
    if name == "popular-all":
        return PopularRecommender(history, window=None, name="popular-all")
    if name == "random":
        return RandomRecommender(history)
    if name not in ARMS:
        raise ValueError(f"model: unknown model {name!r}; expected one of {', '.join(MODEL_NAMES)}")
    if artifact is None:
        raise ValueError(
            f"artifact: model {name!r} needs an artifact folder (feedlab train {name})"
        )
    path = Path(artifact)
    if not (path / "meta.json").is_file():
        raise FileNotFoundError(
            f"artifact: {path} has no meta.json; train it first with `feedlab train {name}`"
        )
    module = importlib.import_module(f"feedlab.models.{name}")
    extra = {} if users is None else {"users": users}
    return module.load(path, history, posts=posts, **extra)


def load_warm(
    name: str, artifact: str | Path | None, history: History, posts: PostCatalog | None = None
) -> Recommender:
    """`load_model` for serving: its per-day fits switch to background mode (a request never
    waits for one, `models.refit`), then one request at the current time, so that what a
    model builds lazily (today's co-visitation fit, the post statistics snapshot) is built
    while loading (off a server's event loop) and not by the first requests after a start or
    reload."""
    model = load_model(name, artifact, history, posts)
    serve_in_background(model)
    users = history.users.ids
    if len(users):
        model.recommend(int(users[-1]), utcnow(), 1)
    return model
