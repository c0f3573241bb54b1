"""`feedlab train control|test`: train an arm from the database into an artifact folder.

Heavy libraries (catboost, sklearn) are imported inside the commands only.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer

URL_HELP = "Database URL (default: $FEEDLAB_DATABASE_URL or sqlite:///feedlab.db)."
T0_HELP = "Train on events before T0 (ISO; default: the median view time)."

train_app = typer.Typer(help="Train a model arm into an artifact folder.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    from models.test.cli import train_test

    train_app.command("control")(train_control)
    train_app.command("test")(train_test)
    app.add_typer(train_app, name="train")


def train_control(
    t0: datetime = typer.Option(None, "--t0", help=T0_HELP),
    out: Path = typer.Option(Path("artifacts/control"), "--out", help="Artifact folder."),
    url: str = typer.Option(None, "--url", help=URL_HELP),
    iterations: int = typer.Option(None, "--iterations", min=10, help="CatBoost trees."),
) -> None:
    """Train the control arm (classic features + CatBoost) on events before T0."""
    meta = run_train_control(url, t0, out, iterations)
    m = meta["metrics"]
    typer.echo(
        f"control {meta['version']} written to {out} in {meta['train_seconds']} s "
        f"({meta['training_data']['rows']} rows); valid HitRate@5 among candidates "
        f"{m['valid_hit_rate_at_5_candidates']:.3f} "
        f"(popularity prior alone: {m['valid_hit_rate_at_5_candidates_prior']:.3f})"
    )


def run_train_control(
    url: str | None,
    t0: datetime | None,
    out: Path,
    iterations: int | None = None,
    progress: bool = True,
) -> dict:
    """Load History, posts and users from the database at `url` and train; returns meta."""
    from analysis.offline.evaluate import median_time
    from models.catalog import PostCatalog, UserProfiles
    from models.control.train import TrainConfig, train
    from models.history import History, from_us, to_us
    from storage.engine import make_engine

    engine = make_engine(url)
    try:
        history = History.from_engine(engine)
        if len(history) == 0:
            raise typer.BadParameter(
                "the feed table is empty: import data first", param_hint="--url"
            )
        posts = PostCatalog.from_engine(engine)
        users = UserProfiles.from_engine(engine)
    finally:
        engine.dispose()
    start = median_time(history) if t0 is None else from_us(to_us(t0))
    config = TrainConfig() if iterations is None else TrainConfig(iterations=iterations)
    try:
        return train(history, posts, users, start, out, config, progress=progress)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--t0") from None
