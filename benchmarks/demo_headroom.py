"""Headroom of the demo world: what HitRate@5 a model would gain if it knew the hidden taste.

The demo world's likes come from a hidden model (`storage.demo.preferences`): besides
demographics, topic affinity and post quality, each user prefers one sub-theme per topic. A
text model can at best recover that preference from the user's likes. Offline, a hit needs a
like, and a like needs a logged view: when the log ignores taste (`--recommender-share 0`)
knowing it gains little offline; the default world's log comes partly from a taste-aware
recommender (`storage.demo.policy`), as a real feed's does. This script trains the control arm
(and with --test-arm the test arm), then evaluates on the rolling-origin pairs of
docs/architecture.md (W = 7 days, K = 5, T0 = median view time):

- control (and the test arm);
- taste oracle: control's score + w * [post in the user's preferred sub-theme], w = the world's
  sub-theme effect (its logit weight) times each `--scales` value, i.e. a control arm that
  knows the hidden taste exactly;
- posterior oracle: control's score + the log of the like-odds multiplier the user's preferred
  sub-theme is expected to bring, under the Bayes posterior of that preference given the user's
  likes and passes before the request (true sub-themes, every other hidden term known): the most
  a perfect reader of post texts could know about taste;
- like oracle: control's score + the hidden like logit (every hidden term at once), scaled the
  same way.

Each oracle gets its paired bootstrap 95% CI against control. An arm that reads taste from post
texts gains about what the posterior oracle gains at best (the taste oracle bounds it from above
with knowledge no history gives); when that lift is not clearly above the CI half-width, no text
model can show a significant lift on a world of this size.

The default world is `make demo`'s (1000 users, 600 posts, 28 days, seed 0).

    .venv/bin/python benchmarks/demo_headroom.py [--users 1000] [--posts 600] [--days 28]
        [--seed 0] [--posts-csv ../shared/data/bbc-news/bbc_articles.csv.gz] [--scales 0.5 1 2]
        [--recommender-share 0.8] [--test-arm]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from feedlab.analysis.offline.evaluate import (  # noqa: E402
    DEFAULT_WINDOW,
    evaluate,
    evaluation_pairs,
    median_time,
    paired_difference,
)
from feedlab.models.base import Recommender  # noqa: E402
from feedlab.models.history import History  # noqa: E402
from feedlab.models.ranker import RankedRecommender  # noqa: E402
from feedlab.models.registry import load_model  # noqa: E402
from feedlab.storage.demo.preferences import PreferenceModel  # noqa: E402
from feedlab.storage.demo.world import WorldSpec  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.quality import demo_db, load_db, train_arm  # noqa: E402
from benchmarks.test_arm import world_spec  # noqa: E402
from feedlab.demo import WORLD_SIZE  # noqa: E402

Bonus = Callable[[int, np.ndarray, datetime], np.ndarray]


@dataclass
class Oracle:
    """The control arm's candidates and scores plus a bonus read from the hidden model."""

    name: str
    control: RankedRecommender
    bonus: Bonus
    version: str = "oracle"

    def recommend(
        self, user_id: int, at: datetime, limit: int, exclude: Collection[int] | None = None
    ) -> list[int]:
        post_ids, scores = self.control.scored(user_id, at, exclude)
        scores = scores + self.bonus(user_id, post_ids, at)
        return post_ids[np.argsort(-scores, kind="stable")[:limit]].tolist()


def oracles(spec: WorldSpec, control: RankedRecommender, scales: list[float]) -> list[Oracle]:
    """A taste, a posterior and a like oracle per scale (1 = the hidden model's own logit
    weights)."""
    hidden = spec.preference_model()

    def taste(scale: float) -> Bonus:
        weight = scale * spec.params.subtheme_effect
        return lambda user_id, post_ids, at: (
            weight * hidden.prefers(np.full(len(post_ids), user_id), post_ids)
        )

    def like(scale: float) -> Bonus:
        return lambda user_id, post_ids, at: (
            scale * hidden.like_logit(np.full(len(post_ids), user_id), post_ids, np.datetime64(at))
        )

    subthemes = np.zeros(len(hidden.topics), dtype=np.int64)  # sub-themes per topic
    np.maximum.at(subthemes, hidden.post_topic, hidden.post_subtheme + 1)

    def posterior(scale: float) -> Bonus:
        gain = np.expm1(spec.params.subtheme_effect)
        return lambda user_id, post_ids, at: (
            scale
            * np.log1p(
                taste_posterior(hidden, subthemes, control.history, user_id, at, post_ids) * gain
            )
        )

    return [
        Oracle(f"{kind} oracle x{scale:g}", control, bonus(scale))
        for kind, bonus in (("taste", taste), ("posterior", posterior), ("like", like))
        for scale in scales
    ]


def taste_posterior(
    hidden: PreferenceModel,
    subthemes: np.ndarray,
    history: History,
    user_id: int,
    at: datetime,
    post_ids: np.ndarray,
) -> np.ndarray:
    """P(each post's sub-theme is the user's preferred one in its topic | the user's likes and
    passes before `at`): Bayes with a uniform prior over sub-themes, the posts' true sub-themes
    and every other hidden term known, i.e. the most a perfect reader of post texts could know.
    `subthemes[topic]`: how many sub-themes the topic has."""
    ts, events, is_like = history.user_events_before(user_id, at)
    views, view_ts = events[~is_like], ts[~is_like]
    liked = np.isin(views, events[is_like])
    seen = hidden.post_index(views)
    user = np.full(len(views), user_id)
    effect = hidden.params.subtheme_effect
    base = hidden.like_logit(user, views, view_ts.astype("datetime64[us]")) - effect * (
        hidden.prefers(user, views)
    )
    candidates = hidden.post_index(post_ids)
    out = np.zeros(len(post_ids))
    for topic in np.unique(hidden.post_topic[candidates]):
        in_topic = hidden.post_topic[seen] == topic
        loglik = np.zeros(subthemes[topic])
        for s in range(subthemes[topic]):
            logit = base[in_topic] + effect * (hidden.post_subtheme[seen[in_topic]] == s)
            loglik[s] = -np.logaddexp(0, np.where(liked[in_topic], -logit, logit)).sum()
        belief = np.exp(loglik - loglik.max())
        belief /= belief.sum()
        mask = hidden.post_topic[candidates] == topic
        out[mask] = belief[hidden.post_subtheme[candidates[mask]]]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=WORLD_SIZE[0])
    parser.add_argument("--posts", type=int, default=WORLD_SIZE[1])
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--posts-csv", type=Path, default=None)
    parser.add_argument(
        "--recommender-share",
        type=float,
        default=None,
        help="share of logged views picked by the taste-aware recommender (default: the "
        "world's default; 0 = the taste-blind browsing policy alone)",
    )
    parser.add_argument(
        "--test-arm",
        action="store_true",
        help="also train the test arm and compare it with control on the same pairs",
    )
    parser.add_argument(
        "--scales",
        type=float,
        nargs="+",
        default=[0.5, 1.0, 2.0],
        help="multiples of the hidden logit weights the oracles add to control's score",
    )
    args = parser.parse_args()
    spec = world_spec(args)
    console = Console(width=150)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        url = demo_db(work, spec)
        train_arm("control", url, work / "control", 0)
        history, posts, users = load_db(url)
        control = load_model("control", work / "control", history, posts, users)
        pairs = evaluation_pairs(history, median_time(history), DEFAULT_WINDOW)
        base = evaluate(control, history, pairs)
        table = Table(
            title=f"Demo world headroom: seed {spec.seed}, {spec.n_users} users, "
            f"{spec.n_posts} posts, {len(pairs)} (user, window) pairs"
        )
        for col in ("model", "HitRate@5", "minus control", "paired 95% CI"):
            table.add_column(col, justify="left" if col == "model" else "right")
        table.add_row("control", f"{base.hit_rate:.3f}", "", "")
        rivals: list[Recommender] = []
        if args.test_arm:
            train_arm("test", url, work / "test", 0)
            rivals.append(load_model("test", work / "test", history, posts, users))
        for rival in rivals + oracles(spec, control, args.scales):
            result = evaluate(rival, history, pairs)
            diff = paired_difference(result, base)
            lo, hi = diff["ci95"]
            table.add_row(
                rival.name,
                f"{result.hit_rate:.3f}",
                f"{diff['difference']:+.3f}",
                f"[{lo:+.3f}, {hi:+.3f}]",
            )
    console.print(table)


if __name__ == "__main__":
    main()
