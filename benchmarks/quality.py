"""Offline quality: rolling-origin HitRate@5 of the baselines and the trained arms, trained
once at T0 and retrained every 7 days, on MovieLens 100K, the demo world and thinned copies.

Datasets (`--datasets`, all by default): MovieLens 100K from ../shared/data (imported with
`storage.importers.movielens`), the same thinned to 15% of its users (`movielens-users15`) and
to 10% of each user's ratings (`movielens-events10`), the demo world (`storage.demo.world`)
and the demo world at a tenth of its views (`demo-thin10`), each into a throw-away SQLite file.
Thinning draws with a fixed seed. The arms (control and test by default) are trained on
events before T0 (the median view time), then everything is evaluated with the rolling-origin
protocol (docs/architecture.md; W = 7 days, K = 5) on the same (user, window) pairs; with
`--retrain-every-days N` (7 by default, 0: train once only) each arm is also refitted every N
days on the events before each step (`NAME@retrain`).

    .venv/bin/python benchmarks/quality.py [--datasets movielens demo-thin10 ...]
        [--demo-users 1000] [--arms control test] [--retrain-every-days 7]
        [--demo-posts-csv ../shared/data/bbc-news/bbc_articles.csv.gz]

The summary table gives per dataset and protocol: popular-30d, the best baseline, each arm,
and the paired bootstrap 95% CI of each arm minus the best baseline and of test - control.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from feedlab.analysis.offline.evaluate import median_time  # noqa: E402
from feedlab.analysis.offline.report import (  # noqa: E402
    ModelSpec,
    below_popular_text,
    comparison_text,
    result_cells,
    run,
)
from feedlab.models.catalog import PostCatalog, UserProfiles  # noqa: E402
from feedlab.models.history import History  # noqa: E402
from feedlab.storage.demo.world import WorldSpec, load_demo_world  # noqa: E402
from feedlab.storage.engine import make_engine, upgrade  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

MOVIELENS = ROOT.parent / "shared" / "data" / "movielens-100k"


def load_db(url: str) -> tuple[History, PostCatalog, UserProfiles]:
    engine = make_engine(url)
    try:
        return (
            History.from_engine(engine),
            PostCatalog.from_engine(engine),
            UserProfiles.from_engine(engine),
        )
    finally:
        engine.dispose()


def movielens_db(folder: Path, name: str = "movielens") -> str:
    from feedlab.storage.importers.movielens import import_movielens

    url = f"sqlite:///{folder / f'{name}.db'}"
    engine = make_engine(url)
    upgrade(engine)
    import_movielens(MOVIELENS, engine)
    engine.dispose()
    return url


def thin(url: str, users_share: float = 1.0, events_share: float = 1.0, seed: int = 0) -> str:
    """Keep a random `users_share` of the users, and of each kept user a random
    `events_share` of their (user, post) pairs (at least one; a pair's view and like go
    together), deleting the other feed rows of the SQLite file at `url`."""
    from sqlalchemy import text

    engine = make_engine(url)
    rng = np.random.default_rng(seed)
    with engine.begin() as conn:
        pairs = np.array(conn.execute(text("SELECT DISTINCT user_id, post_id FROM feed")).all())
        users = np.unique(pairs[:, 0])
        kept_users = rng.choice(users, max(1, round(users_share * len(users))), replace=False)
        pairs = pairs[np.isin(pairs[:, 0], kept_users)]
        keep = []
        for user_pairs in np.split(pairs, np.flatnonzero(np.diff(pairs[:, 0])) + 1):
            n = max(1, round(events_share * len(user_pairs)))
            keep.append(user_pairs[rng.choice(len(user_pairs), n, replace=False)])
        kept = np.concatenate(keep)
        conn.execute(text("CREATE TEMP TABLE kept (user_id BIGINT, post_id BIGINT)"))
        conn.execute(
            text("INSERT INTO kept VALUES (:u, :p)"),
            [{"u": int(u), "p": int(p)} for u, p in kept],
        )
        conn.execute(
            text(
                "DELETE FROM feed WHERE NOT EXISTS (SELECT 1 FROM kept "
                "WHERE kept.user_id = feed.user_id AND kept.post_id = feed.post_id)"
            )
        )
    engine.dispose()
    return url


def demo_db(folder: Path, spec: WorldSpec, name: str = "demo") -> str:
    url = f"sqlite:///{folder / f'{name}.db'}"
    engine = make_engine(url)
    upgrade(engine)
    load_demo_world(spec, engine)
    engine.dispose()
    return url


def train_arm(arm: str, url: str, out: Path, selection_folds: int) -> float:
    started = time.perf_counter()
    if arm == "control":
        from feedlab.models.cli import run_train_control

        run_train_control(url, None, out, selection_folds=selection_folds)
    else:
        from feedlab.models.cli import run_train_test

        run_train_test(url, None, out, selection_folds=selection_folds)
    return time.perf_counter() - started


def evaluate_dataset(
    name: str,
    url: str,
    arms: list[str],
    work: Path,
    console: Console,
    selection_folds: int = 0,
    retrain_every: timedelta | None = None,
) -> dict:
    history, posts, users = load_db(url)
    specs, train_s = [], {}
    for arm in arms:
        out = work / f"{name}-{arm}"
        train_s[arm] = train_arm(arm, url, out, selection_folds)
        specs.append(ModelSpec(arm, out))
    compare = ("test", "control") if {"test", "control"} <= set(arms) else None
    report = run(
        history,
        specs,
        median_time(history),
        posts=posts,
        users=users,
        compare=compare,
        progress=False,
        retrain_every=retrain_every,
    )
    report["train_seconds"] = train_s
    console.print(
        f"{name}: T0 {report['protocol']['t0']}, {report['protocol']['pairs']} pairs, "
        f"training seconds {train_s}"
    )
    return report


DATASETS = ("movielens", "movielens-users15", "movielens-events10", "demo", "demo-thin10")


def dataset_url(name: str, work: Path, demo: WorldSpec) -> str | None:
    """The SQLite URL of dataset `name` built in `work` (None: MovieLens is not present)."""
    if name.startswith("movielens"):
        if not MOVIELENS.is_dir():
            return None
        url = movielens_db(work, name)
        if name == "movielens-users15":
            return thin(url, users_share=0.15)
        if name == "movielens-events10":
            return thin(url, events_share=0.10)
        return url
    if name == "demo-thin10":
        thinned = replace(demo, views_per_user_day=demo.views_per_user_day / 10)
        return demo_db(work, thinned, name)
    return demo_db(work, demo, name)


def summary_rows(name: str, report: dict, arms: list[str]) -> list[list[str]]:
    """Per protocol: popular-30d, the best baseline, each arm and its paired difference to
    the best baseline, test - control."""
    hit = {r["model"]: r["hit_rate"] for r in report["results"]}
    best = report.get("best_baseline", "popular")
    against = {
        d["a"]: d for d in report.get("versus_best_baseline", report.get("versus_popular", []))
    }
    protocols = [("once", "", "comparison")]
    if report["protocol"]["retrain_every_days"]:
        days = report["protocol"]["retrain_every_days"]
        protocols.append((f"retrain {days:g} d", "@retrain", "comparison_retrain"))
    rows = []
    for protocol, suffix, key in protocols:
        cells = [name, protocol, f"{hit['popular']:.3f}", f"{best} {hit[best]:.3f}"]
        for arm in arms:
            d = against[f"{arm}{suffix}"]
            lo, hi = d["ci95"]
            cells.append(f"{hit[arm + suffix]:.3f} ({d['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}])")
        c = report.get(key)
        cells.append(
            ""
            if c is None
            else f"{c['difference']:+.3f} [{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}]"
        )
        rows.append(cells)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arms", nargs="*", default=["control", "test"])
    parser.add_argument("--datasets", nargs="*", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--demo-users", type=int, default=1000)
    parser.add_argument("--demo-posts", type=int, default=1000)
    parser.add_argument("--demo-days", type=int, default=28)
    parser.add_argument(
        "--demo-posts-csv",
        type=Path,
        default=None,
        help="real post texts for the demo world (e.g. ../shared/data/bbc-news/"
        "bbc_articles.csv.gz); default: generated texts",
    )
    parser.add_argument(
        "--selection-folds",
        type=int,
        default=0,
        help="train the arms with N rolling folds choosing the prior (default 0: one hold-out)",
    )
    parser.add_argument(
        "--retrain-every-days",
        type=float,
        default=7,
        help="also evaluate each arm refitted every N days (NAME@retrain rows; 0: train once only)",
    )
    args = parser.parse_args()
    every = timedelta(days=args.retrain_every_days) if args.retrain_every_days else None
    console = Console(width=180)
    demo = WorldSpec(
        n_users=args.demo_users,
        n_posts=args.demo_posts,
        days=args.demo_days,
        posts_csv=str(args.demo_posts_csv) if args.demo_posts_csv else None,
    )
    reports = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.datasets:
            url = dataset_url(name, work, demo)
            if url is None:
                console.print(f"skipping {name}: {MOVIELENS} not present")
                continue
            reports[name] = evaluate_dataset(
                name, url, args.arms, work, console, args.selection_folds, every
            )
    table = Table(title="Offline HitRate@5 (rolling origin, W = 7 d, T0 = median view time)")
    for col in (
        "dataset",
        "model",
        "pairs",
        "HitRate@5",
        "95% CI (users bootstrap)",
        "Recall@5",
        "NDCG@5",
        "coverage",
    ):
        table.add_column(col, justify="left" if col in ("dataset", "model") else "right")
    for name, report in reports.items():
        for r in report["results"]:
            table.add_row(name, r["model"], *result_cells(r))
    console.print(table)
    for name, report in reports.items():
        for line in below_popular_text(report):
            console.print(f"{name}: {line}")
        text = comparison_text(report)
        if text:
            for line in text.splitlines():
                console.print(f"{name}: {line}")
    summary = Table(
        title="Summary: HitRate@5 (arm: paired difference to the best baseline, 95% CI)"
    )
    for col in ("dataset", "protocol", "popular-30d", "best baseline", *args.arms):
        summary.add_column(col)
    summary.add_column("test - control" if {"test", "control"} <= set(args.arms) else "")
    for name, report in reports.items():
        for row in summary_rows(name, report, args.arms):
            summary.add_row(*row)
    console.print(summary)


if __name__ == "__main__":
    main()
