"""`feedlab` subcommands that manage the database: init-db, import csv|movielens|postgres,
demo-data. Heavy libraries are imported inside the commands so `feedlab --help` stays fast."""

from __future__ import annotations

from pathlib import Path

import typer
from feedlab.storage.demo.policy import RECOMMENDER_SHARE
from feedlab.storage.demo.preferences import PreferenceParams

URL_HELP = "Database URL (default: $FEEDLAB_DATABASE_URL or sqlite:///feedlab.db)."
REPLACE_HELP = (
    "If the database already holds users, posts or feed events, delete them (and cached post "
    "embeddings) and load the new data in the same transaction. Without it a non-empty "
    "database is refused and left untouched. Exposure logs and experiment configs are kept."
)

CSV_HELP = (
    "Import the feed CSV layout: users.csv, posts.csv, feed.csv (UTF-8, header line, .gz ok).\n\n"
    "users.csv: user_id plus any of age, gender, country, city, os, source; any other column "
    "(e.g. exp_group) is kept in the user's attributes JSON. "
    "posts.csv: post_id, text, topic, optional created_at. "
    "feed.csv: timestamp (ISO 8601 with any offset, or unix seconds; stored as naive UTC), "
    "user_id, post_id, action (view or like), target (0, 1 or empty; NULL for likes), "
    "optional event_id. Ids must be unique and every feed row must name a known user and post."
)
MOVIELENS_HELP = (
    "Import MovieLens 100K from its folder (u.user, u.item, u.genre, u.data.gz).\n\n"
    "943 users (occupation and zip in attributes, US ZIP region as city), 1,682 movies as posts "
    "(text = title, genres and the plot from plots.tsv when present; topic = first genre), every "
    "rating a view (target 1 for ratings 4-5) and every rating of 4-5 also a like."
)
POSTGRES_HELP = (
    "Import the origin social network's tables from a PostgreSQL database.\n\n"
    "Reads user_data, post_text_df and feed_data from --url and loads them into --target-url "
    "with the same validation as import csv; errors name the table and the row."
)
DEMO_HELP = (
    "Build the seeded demo social network (users, posts, feed history) into the database.\n\n"
    "Likes come from a hidden preference model: demographics x topic plus a within-topic taste "
    "that shows only in the words of a post. Views are logged as a real feed is: a share "
    "(--recommender-share) by a taste-aware recommender that shows the best of 20 browsed posts "
    "by the hidden like logit plus noise, the rest by browsing (random + popular posts). The "
    "same --seed gives the same world. The model's spec is written to --spec-out so the traffic "
    "simulator can rebuild it."
)

import_app = typer.Typer(
    help=(
        "Import users, posts and feed events into the feedlab database. Every importer validates "
        "all input first, reports the first bad row with its file and line, and loads nothing on "
        "error (one transaction). A database that already holds data is refused unless --replace."
    ),
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.command("init-db")(init_db)
    app.add_typer(import_app, name="import")
    app.command("demo-data", help=DEMO_HELP)(demo_data)


def init_db(url: str = typer.Option(None, "--url", help=URL_HELP)) -> None:
    """Create the schema, or upgrade it to the latest migration."""
    from feedlab.storage.engine import make_engine, upgrade

    from feedlab.settings import database_url

    engine = make_engine(database_url(url))
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    typer.echo(f"schema up to date at {engine.url.render_as_string()}")


def _run_import(url: str | None, load) -> None:
    """Run one importer against `url` (created or migrated first: importing is one of the ways
    a database comes to be), turning bad input into a message and exit code 1."""
    from feedlab.storage.engine import make_engine, upgrade
    from feedlab.storage.importing import DatabaseNotEmptyError
    from feedlab.storage.validation import ImportValidationError

    from feedlab.settings import database_url

    engine = make_engine(database_url(url))
    try:
        upgrade(engine)
        summary = load(engine)
    except (ImportValidationError, DatabaseNotEmptyError) as exc:
        typer.echo(f"error: {exc}; nothing was imported", err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    typer.echo(f"{summary} into {engine.url.render_as_string()}")


@import_app.command("csv", help=CSV_HELP)
def import_csv(
    users: Path = typer.Option(..., "--users", exists=True, dir_okay=False, help="users.csv"),
    posts: Path = typer.Option(..., "--posts", exists=True, dir_okay=False, help="posts.csv"),
    feed: Path = typer.Option(..., "--feed", exists=True, dir_okay=False, help="feed.csv"),
    url: str = typer.Option(None, "--url", help=URL_HELP),
    replace: bool = typer.Option(False, "--replace", help=REPLACE_HELP),
) -> None:
    """Import the feed CSV layout."""
    from feedlab.storage.importers.csv_files import import_csv as run

    _run_import(url, lambda engine: run(engine, users, posts, feed, replace=replace))


@import_app.command("movielens", help=MOVIELENS_HELP)
def import_movielens(
    folder: Path = typer.Argument(
        ..., exists=True, file_okay=False, help="MovieLens 100K folder (u.user, u.item, u.data.gz)"
    ),
    url: str = typer.Option(None, "--url", help=URL_HELP),
    replace: bool = typer.Option(False, "--replace", help=REPLACE_HELP),
) -> None:
    """Import MovieLens 100K."""
    from feedlab.storage.importers.movielens import import_movielens as run

    _run_import(url, lambda engine: run(folder, engine, replace=replace))


@import_app.command("postgres", help=POSTGRES_HELP)
def import_postgres(
    source_url: str = typer.Option(
        ..., "--url", help="Source PostgreSQL URL holding user_data, post_text_df, feed_data."
    ),
    target_url: str = typer.Option(None, "--target-url", help=URL_HELP),
    replace: bool = typer.Option(False, "--replace", help=REPLACE_HELP),
) -> None:
    """Import the origin social network's tables from PostgreSQL."""
    from feedlab.storage.importers.postgres import import_postgres as run

    _run_import(target_url, lambda engine: run(source_url, engine, replace=replace))


def demo_data(
    users: int = typer.Option(5000, "--users", min=10, help="Number of simulated users."),
    posts: int = typer.Option(2000, "--posts", min=10, help="Number of posts."),
    days: int = typer.Option(28, "--days", min=1, help="Days of feed history."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed builds the same world."),
    posts_csv: Path = typer.Option(
        None,
        "--posts-csv",
        exists=True,
        dir_okay=False,
        help="Real post texts (CSV with title,text and category or topic; .gz ok), e.g. "
        "../shared/data/bbc-news/bbc_articles.csv.gz. Default: generated texts.",
    ),
    taste: float = typer.Option(
        PreferenceParams.subtheme_effect,
        "--taste",
        min=0.0,
        help="Strength (log-odds) of the hidden within-topic taste that shows only in a post's "
        "words: what a text model can learn and a topic label cannot.",
    ),
    chunk_users: int = typer.Option(
        None,
        "--chunk-users",
        min=1,
        help="Draw the history a chunk of this many users at a time and copy each chunk into "
        "the database before the next, so memory stays bounded by a chunk: for worlds of tens "
        "of millions of events (e.g. --users 163000 --posts 7000 --days 120 --chunk-users "
        "5000). Default: the whole history at once, in memory.",
    ),
    recommender_share: float = typer.Option(
        RECOMMENDER_SHARE,
        "--recommender-share",
        min=0.0,
        max=1.0,
        help="Share of each user's views logged by a taste-aware recommender (the rest: random "
        "and popular posts). 0 = a taste-blind log, where offline HitRate cannot see what a model "
        "knows about taste.",
    ),
    url: str = typer.Option(None, "--url", help=URL_HELP),
    replace: bool = typer.Option(False, "--replace", help=REPLACE_HELP),
    spec_out: Path = typer.Option(
        Path("demo_world.json"),
        "--spec-out",
        help="Where to write the world's parameters, from which the traffic simulator rebuilds "
        "the exact same hidden preference model.",
    ),
) -> None:
    """Build the seeded demo social network into the database."""
    from feedlab.storage.demo.world import WorldSpec, load_demo_world

    spec = WorldSpec(
        seed=seed,
        n_users=users,
        n_posts=posts,
        days=days,
        posts_csv=str(posts_csv) if posts_csv else None,
        recommender_share=recommender_share,
        params=PreferenceParams(subtheme_effect=taste),
        chunk_users=chunk_users,
    )
    _run_import(url, lambda engine: load_demo_world(spec, engine, replace=replace))
    spec.save(spec_out)
    typer.echo(f"world spec written to {spec_out}")
