"""The control arm: classic point-in-time features + a CatBoost ranker.

`load(artifact_dir, history, posts=None)` is what `models.registry.load_model` calls;
`train(...)` (models.control.train) writes the artifact folder.
"""

from __future__ import annotations

from pathlib import Path

from feedlab.models.artifact import load_shared, read_meta
from feedlab.models.candidates import CandidateConfig, DailyCoVisitation
from feedlab.models.catalog import PostCatalog, UserProfiles
from feedlab.models.control.model import ControlRecommender, Scorer
from feedlab.models.features import FeatureBuilder
from feedlab.models.history import History

__all__ = ["ControlRecommender", "load"]


def load(
    artifact_dir: str | Path,
    history: History,
    posts: PostCatalog | None = None,
    users: UserProfiles | None = None,
) -> ControlRecommender:
    """The trained control model on `history`; `posts` (the live catalog) may hold posts the
    artifact never saw: they get text vectors now (co-visitation is refitted daily anyway). `users`
    defaults to the profiles stored at training time."""
    path = Path(artifact_dir)
    meta = read_meta(path)
    shared = load_shared(path, meta, posts, users)
    covisit = DailyCoVisitation(history, shared.catalog.post_ids, meta["config"]["neighbours"])
    params = meta["scorer"]
    needed = [params["prior_column"], *params["ranker_columns"]]
    scorer = Scorer(columns=needed, ranker=shared.ranker, **params)
    builder = FeatureBuilder(history, shared.table, shared.users, shared.encoder)
    config = CandidateConfig(**meta["config"]["candidates"])
    return ControlRecommender(builder, covisit, scorer, needed, config, meta["version"])
