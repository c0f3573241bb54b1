"""Rolling retraining, evaluated as it runs: the arm is refitted at every `every` step from
the first window start, on the events before that step only, with the settings of its artifact
(chosen before T0), and each refit model serves the (user, window) pairs of its own period.
This is what a scheduled `feedlab train` does in production; the train-once protocol keeps the
model of T0 for every window."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
from feedlab.analysis.offline.evaluate import Pair, Result, evaluate
from feedlab.models.catalog import PostCatalog, UserProfiles
from feedlab.models.history import History
from feedlab.models.ranker import RankedRecommender, TrainingSet


def retrain_periods(pairs: Sequence[Pair], every: timedelta) -> list[tuple[datetime, list[Pair]]]:
    """(retraining time, its pairs): the pairs grouped by the `every` step, counted from the
    first pair's window start, that their window start falls in."""
    first = pairs[0].at
    periods: dict[datetime, list[Pair]] = {}
    for pair in pairs:
        periods.setdefault(first + ((pair.at - first) // every) * every, []).append(pair)
    return sorted(periods.items(), key=lambda item: item[0])


def retrained(
    model: RankedRecommender,
    history: History,
    pairs: Sequence[Pair],
    every: timedelta,
    k: int,
    posts: PostCatalog | None = None,
    users: UserProfiles | None = None,
    label: str | None = None,
) -> Result:
    """The metrics of `model`'s arm refitted at each period start (`retrain_periods`) on the
    same pairs, in their order; `version` lists the refit versions."""
    ranker = model.ranker
    catalog, profiles = posts or ranker.posts_, users or ranker.users_
    parts: list[Result] = []
    for start, chunk in retrain_periods(pairs, every):
        fitted = ranker.refit(TrainingSet(history, catalog, profiles, start))
        parts.append(evaluate(fitted.recommender(history, posts, users), history, chunk, k))
    return Result(
        model=label or f"{model.name}@retrain",
        version=" ".join(p.version for p in parts),
        k=k,
        user_ids=np.concatenate([p.user_ids for p in parts]),
        hits=np.concatenate([p.hits for p in parts]),
        recall=np.concatenate([p.recall for p in parts]),
        ndcg=np.concatenate([p.ndcg for p in parts]),
        recommended=[recs for p in parts for recs in p.recommended],
        catalog_size=parts[-1].catalog_size,
    )
