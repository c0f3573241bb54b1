"""Offline quality: rolling-origin HitRate@5 of the baselines and the trained arms.

Datasets: MovieLens 100K from ../shared/data (imported with `storage.importers.movielens`) and
the demo world (`storage.demo.world`), each into a throw-away SQLite file. The arms (control
and test by default) are trained on events before T0 (the median view time), then everything
is evaluated with the rolling-origin protocol (docs/architecture.md; W = 7 days, K = 5) on the
same (user, window) pairs.

    .venv/bin/python benchmarks/quality.py [--skip-demo] [--demo-users 1000] [--arms control test]
        [--demo-posts-csv ../shared/data/bbc-news/bbc_articles.csv.gz]

With both arms, each dataset also gets the paired bootstrap 95% CI of HitRate(test) -
HitRate(control) on the same pairs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

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


def movielens_db(folder: Path) -> str:
    from feedlab.storage.importers.movielens import import_movielens

    url = f"sqlite:///{folder / 'movielens.db'}"
    engine = make_engine(url)
    upgrade(engine)
    import_movielens(MOVIELENS, engine)
    engine.dispose()
    return url


def demo_db(folder: Path, spec: WorldSpec) -> str:
    url = f"sqlite:///{folder / 'demo.db'}"
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arms", nargs="*", default=["control", "test"])
    parser.add_argument("--skip-demo", action="store_true")
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
        default=None,
        help="also evaluate each arm refitted every N days (NAME@retrain rows; slow)",
    )
    args = parser.parse_args()
    every = None if args.retrain_every_days is None else timedelta(days=args.retrain_every_days)
    console = Console(width=150)
    reports = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if MOVIELENS.is_dir():
            reports["movielens-100k"] = evaluate_dataset(
                "movielens-100k",
                movielens_db(work),
                args.arms,
                work,
                console,
                args.selection_folds,
                every,
            )
        else:
            console.print(f"skipping MovieLens: {MOVIELENS} not present")
        if not args.skip_demo:
            spec = WorldSpec(
                n_users=args.demo_users,
                n_posts=args.demo_posts,
                days=args.demo_days,
                posts_csv=str(args.demo_posts_csv) if args.demo_posts_csv else None,
            )
            url = demo_db(work, spec)
            reports["demo-world"] = evaluate_dataset(
                "demo-world", url, args.arms, work, console, args.selection_folds, every
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
            console.print(f"{name}: {text}")


if __name__ == "__main__":
    main()
