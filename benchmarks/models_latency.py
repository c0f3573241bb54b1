"""Control-arm `recommend()` latency on a 7,000-post catalog (in process, one thread).

Builds a demo world with 7,000 posts into a throw-away SQLite file, trains the control arm on
it, then times `recommend(user, at, 5)` for random users (half of them cold-start) at distinct
request times just after the history; before half of the requests a new like arrives, so
the post statistics (cached while no event arrives) must be recomputed. Budget: p50 <= 5 ms,
p99 <= 20 ms.

    .venv/bin/python benchmarks/models_latency.py [--requests 2000] [--users 2000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from feedlab.models.base import Event  # noqa: E402
from feedlab.models.catalog import PostCatalog, UserProfiles  # noqa: E402
from feedlab.models.history import History  # noqa: E402
from feedlab.models.registry import load_model  # noqa: E402
from feedlab.models.threads import one_blas_thread  # noqa: E402
from feedlab.storage.engine import make_engine, upgrade  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=7000)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument(
        "--workdir", type=Path, help="Keep (and reuse) the demo database and artifact here."
    )
    args = parser.parse_args()
    from feedlab.models.cli import run_train_control
    from feedlab.storage.demo.world import WorldSpec, load_demo_world

    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{work / 'demo.db'}"
        fresh = not (work / "demo.db").exists()
        engine = make_engine(url)
        upgrade(engine)
        if fresh:
            spec = WorldSpec(n_users=args.users, n_posts=args.posts, days=args.days)
            load_demo_world(spec, engine)
        history = History.from_engine(engine)
        posts, users = PostCatalog.from_engine(engine), UserProfiles.from_engine(engine)
        engine.dispose()
        started = time.perf_counter()
        if not (work / "control" / "meta.json").exists():
            run_train_control(url, None, work / "control", progress=False)
        train_s = time.perf_counter() - started
        meta = json.loads((work / "control" / "meta.json").read_text())
        load_started = time.perf_counter()
        model = load_model("control", work / "control", history, posts, users)
        one_blas_thread()  # as the gateway and model services do
        load_s = time.perf_counter() - load_started

    rng = np.random.default_rng(0)
    end = history.time_range()[1]
    known = history.users.ids
    model.recommend(int(known[0]), end, 5)  # warm-up: today's co-visitation fit
    timings: dict[str, list[float]] = {}
    post_ids = posts.post_ids
    for i in range(args.requests):
        at = end + timedelta(milliseconds=i + 1)
        cold = i % 2 == 1
        fresh_event = i % 4 >= 2  # half the requests follow a new like: no cached post stats
        if fresh_event:
            like = Event(at - timedelta(microseconds=1), int(rng.choice(known)), 0, "like")
            history.add([replace(like, post_id=int(rng.choice(post_ids)))])
        user = 10**9 + i if cold else int(rng.choice(known))
        t = time.perf_counter()
        recs = model.recommend(user, at, 5)
        name = ("cold-start" if cold else "known") + (", after a new event" if fresh_event else "")
        timings.setdefault(name, []).append(time.perf_counter() - t)
        assert len(recs) == 5
    table = Table(
        title=f"control recommend() latency, {len(posts)} posts, {len(history)} events, "
        f"{args.requests} requests (budget p50 <= 5 ms, p99 <= 20 ms)"
    )
    for col in ("user", "n", "p50 ms", "p90 ms", "p99 ms", "max ms"):
        table.add_column(col, justify="right")
    everything = [x for v in timings.values() for x in v]
    for name, values in [*timings.items(), ("all", everything)]:
        ms = np.array(values) * 1000
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        table.add_row(
            name, str(len(ms)), f"{p50:.2f}", f"{p90:.2f}", f"{p99:.2f}", f"{ms.max():.2f}"
        )
    console.print(table)
    console.print(
        f"training {train_s:.0f} s (0 = reused; {meta['training_data']['rows']} rows, "
        f"{meta['train_seconds']} s when trained), load {load_s:.1f} s"
    )


if __name__ == "__main__":
    main()
