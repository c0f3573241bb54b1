"""A small synthetic world for ranker tests: users who prefer one topic, posts whose
popularity rises and fades."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from feedlab.models.catalog import PostCatalog, UserProfiles
from feedlab.models.history import History

START = datetime(2024, 1, 1)
T0 = START + timedelta(days=40)
TOPICS = ["sport", "politics", "tech", "movies"]


def world(
    seed: int = 0, n_users: int = 120, n_events: int = 9000
) -> tuple[History, PostCatalog, UserProfiles]:
    """60 days, `n_users` users who prefer one topic, 80 posts whose popularity rises and
    fades, `n_events` views drawn (a share of them liked)."""
    rng = np.random.default_rng(seed)
    n_posts, days = 80, 60
    topic = rng.integers(0, len(TOPICS), n_posts)
    born = rng.uniform(0, days, n_posts)
    taste = rng.integers(0, len(TOPICS), n_users)
    ts, users, posts, actions = [], [], [], []
    for _ in range(n_events):
        u = int(rng.integers(n_users))
        t = float(rng.uniform(0, days))
        alive = np.flatnonzero(born <= t)
        if len(alive) == 0:
            continue
        fresh = np.exp(-(t - born[alive]) / 10)
        weight = fresh * np.where(topic[alive] == taste[u], 3.0, 1.0)
        p = int(alive[rng.choice(len(alive), p=weight / weight.sum())])
        at = START + timedelta(days=t)
        ts.append(at), users.append(u), posts.append(p), actions.append("view")
        if rng.random() < (0.6 if topic[p] == taste[u] else 0.15):
            ts.append(at), users.append(u), posts.append(p), actions.append("like")
    history = History.from_arrays(ts, users, posts, actions)
    catalog = PostCatalog.from_records(
        range(n_posts),
        [f"{TOPICS[t]} story number {i} about {TOPICS[t]} things" for i, t in enumerate(topic)],
        [TOPICS[t] for t in topic],
    )
    profiles = UserProfiles.from_records(
        range(n_users),
        [{"age": int(20 + u % 40), "gender": "MF"[u % 2]} for u in range(n_users)],
    )
    return history, catalog, profiles
