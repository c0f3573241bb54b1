"""`feedlab assign`: where users go under an experiments config (for support staff)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("assign")(assign_users)


def assign_users(
    user_ids: list[int] = typer.Argument(None, help="User ids to look up."),
    config: Path = typer.Option(
        None,
        "--config",
        help="Experiments YAML (default: experiments/experiments.yaml in the current folder).",
    ),
    sql: bool = typer.Option(
        False, "--sql", help="Print the PostgreSQL expression of the assignment instead."
    ),
) -> None:
    """Print user → experiment, exp_group, model; or validate the file (exit 2 if invalid)."""
    from feedlab.experiments.assignment import Assigner, assignment_sql
    from feedlab.experiments.config import DEFAULT_CONFIG, ConfigError, load_config
    from rich.console import Console
    from rich.table import Table

    if config is None and not DEFAULT_CONFIG.is_file():
        typer.echo(
            f"no {DEFAULT_CONFIG} under {Path.cwd()}: run this in the repository or give "
            "--config FILE",
            err=True,
        )
        raise typer.Exit(2)
    path = (config or DEFAULT_CONFIG).resolve()
    try:
        loaded = load_config(path)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if sql:
        typer.echo(f"-- exp_group under {path} (config_version {loaded.version})")
        typer.echo(assignment_sql(loaded.config))
        return
    if not user_ids:
        typer.echo(f"{path}: valid, config_version {loaded.version}")
        return
    if any(u < 0 for u in user_ids):
        typer.echo("USER_IDS: user ids must be non-negative", err=True)
        raise typer.Exit(2)
    assigner = Assigner(loaded.config)
    table = Table(title=f"{path} (config_version {loaded.version})")
    for col in ("user_id", "experiment", "exp_group", "model"):
        table.add_column(col)
    for uid in user_ids:
        a = assigner.assign(uid)
        table.add_row(str(uid), a.experiment or "-", a.exp_group, a.model)
    Console().print(table)
