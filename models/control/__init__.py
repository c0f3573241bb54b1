"""The control arm: the shared ranker on classic point-in-time features, corrected by the
user's activity and the TF-IDF/SVD similarity of a post to what the user liked.

`load(artifact_dir, history, posts=None, users=None)` is what `models.registry.load_model`
calls; `train(...)` writes the artifact folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from feedlab.models.catalog import PostCatalog, UserProfiles
from feedlab.models.features import USER_NAMES
from feedlab.models.history import History
from feedlab.models.ranker import RankedRecommender, Ranker, RankerConfig, TrainingSet

NAME = "control"
RANKER_COLUMNS = (*USER_NAMES, "user_text_sim")


def config(**overrides: Any) -> RankerConfig:
    """The arm's ranker configuration (`overrides`: any other `RankerConfig` field)."""
    return RankerConfig(**{"ranker_columns": RANKER_COLUMNS, **overrides})


def train(
    data: TrainingSet, out: Path, ranker_config: RankerConfig | None = None, progress: bool = True
) -> dict[str, Any]:
    """Train on events before `data.t0`, write the artifact folder `out`, return its meta."""
    return Ranker(ranker_config or config()).fit(data, progress, NAME).save(out, NAME, {})


def load(
    artifact_dir: str | Path,
    history: History,
    posts: PostCatalog | None = None,
    users: UserProfiles | None = None,
) -> RankedRecommender:
    """The trained control model on `history`; `posts` (the live catalog) may hold posts the
    artifact never saw; `users` defaults to the profiles stored at training time."""
    return Ranker.load(Path(artifact_dir), NAME).recommender(history, posts, users)
