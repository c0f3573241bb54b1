"""An independent reference for interleaving credits, computed in Python from the raw tables:
tests compare `feedlab analyze`'s SQL against it."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from feedlab.storage.schema import LIKE, exposure_items, exposures, feed
from sqlalchemy import Engine, select


def reference_credits(
    engine: Engine, experiment: str, window_s: float = 3600.0
) -> dict[int, dict[str, int]]:
    """{user: {arm: likes}} for every user exposed interleaved in `experiment`: each like goes
    to the latest exposure of that post to that user at most `window_s` before it, and credits
    that exposure's team unless the exposure was a fallback."""
    with engine.connect() as conn:
        exps = {
            r.request_id: r
            for r in conn.execute(
                select(exposures).where(
                    exposures.c.experiment == experiment, exposures.c.exp_group == "interleaved"
                )
            )
        }
        items = [r for r in conn.execute(select(exposure_items)) if r.request_id in exps]
        likes = conn.execute(select(feed).where(feed.c.action == LIKE)).all()
    shown = defaultdict(list)
    for item in items:
        shown[(item.user_id, item.post_id)].append(item)
    credits: dict[int, dict[str, int]] = {r.user_id: defaultdict(int) for r in exps.values()}
    window = timedelta(seconds=window_s)
    for like in likes:
        before = [
            i
            for i in shown.get((like.user_id, like.post_id), [])
            if i.ts <= like.timestamp < i.ts + window
        ]
        if not before:
            continue
        latest = max(before, key=lambda i: (i.ts, i.request_id))
        if not exps[latest.request_id].fallback and latest.team is not None:
            credits[like.user_id][latest.team] += 1
    return {u: dict(c) for u, c in credits.items()}
