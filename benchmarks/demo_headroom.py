"""Headroom of the demo world: what HitRate@5 a model would gain if it knew the hidden taste.

The demo world's likes come from a hidden model (`storage.demo.preferences`): besides
demographics, topic affinity and post quality, each user prefers one sub-theme per topic. A
text model can at best recover that preference from the user's likes. This script trains the
control arm, then evaluates on the DESIGN protocol pairs (W = 7 days, K = 5, T0 = median view
time):

- control;
- taste oracle: control's score + w * [post in the user's preferred sub-theme], w = the world's
  sub-theme effect (its logit weight) times each `--scales` value, i.e. a control arm that
  knows the hidden taste exactly;
- like oracle: control's score + the hidden like logit (every hidden term at once), scaled the
  same way.

Each oracle gets its paired bootstrap 95% CI against control. An arm that reads taste from post
texts gains at most about what the taste oracle gains; when that lift is not far above the CI
half-width, no text model can show a significant lift on a world of this size.

    .venv/bin/python benchmarks/demo_headroom.py [--users 1000] [--posts 1000] [--days 28]
        [--seed 0] [--posts-csv ../shared/data/bbc-news/bbc_articles.csv.gz] [--scales 0.5 1 2]
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

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from analysis.offline.evaluate import (  # noqa: E402
    DEFAULT_WINDOW,
    evaluate,
    evaluation_pairs,
    median_time,
    paired_difference,
)
from benchmarks.quality import demo_db, load_db, train_arm  # noqa: E402
from benchmarks.test_arm import world_spec  # noqa: E402
from models.control.model import ControlRecommender  # noqa: E402
from models.registry import load_model  # noqa: E402
from storage.demo.world import WorldSpec  # noqa: E402

Bonus = Callable[[int, np.ndarray, datetime], np.ndarray]


@dataclass
class Oracle:
    """The control arm's candidates and scores plus a bonus read from the hidden model."""

    name: str
    control: ControlRecommender
    bonus: Bonus
    version: str = "oracle"

    def recommend(
        self, user_id: int, at: datetime, limit: int, exclude: Collection[int] | None = None
    ) -> list[int]:
        post_ids, scores = self.control.scored(user_id, at, exclude)
        scores = scores + self.bonus(user_id, post_ids, at)
        return post_ids[np.argsort(-scores, kind="stable")[:limit]].tolist()

    def observe(self, events: list) -> None:
        """Stateless beside the shared History."""


def oracles(spec: WorldSpec, control: ControlRecommender, scales: list[float]) -> list[Oracle]:
    """A taste oracle and a like oracle per scale (1 = the hidden model's own logit weights)."""
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

    return [
        Oracle(f"{kind} oracle x{scale:g}", control, bonus(scale))
        for kind, bonus in (("taste", taste), ("like", like))
        for scale in scales
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--posts-csv", type=Path, default=None)
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
        train_arm("control", url, work / "control")
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
        for oracle in oracles(spec, control, args.scales):
            result = evaluate(oracle, history, pairs)
            diff = paired_difference(result, base)
            lo, hi = diff["ci95"]
            table.add_row(
                oracle.name,
                f"{result.hit_rate:.3f}",
                f"{diff['difference']:+.3f}",
                f"[{lo:+.3f}, {hi:+.3f}]",
            )
    console.print(table)


if __name__ == "__main__":
    main()
