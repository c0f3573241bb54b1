"""`feedlab` subcommands that manage the database."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("init-db")(init_db)


def init_db(
    url: str = typer.Option(
        None, "--url", help="Database URL (default: $FEEDLAB_DATABASE_URL or sqlite:///feedlab.db)."
    ),
) -> None:
    """Create the schema, or upgrade it to the latest migration."""
    from storage.engine import database_url, make_engine

    make_engine(url).dispose()
    typer.echo(f"schema up to date at {database_url(url)}")
