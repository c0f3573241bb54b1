"""`feedlab simulate` and `feedlab demo`: the commands that drive a running gateway end to end."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
    app.command("demo")(demo)


def simulate(
    url: str = typer.Option(..., "--url", help="Gateway base URL; loopback only."),
    users: int = typer.Option(200, "--users", min=1, help="Simulated users (sampled by seed)."),
    days: int = typer.Option(3, "--days", min=1, max=365, help="Simulated days."),
    seed: int = typer.Option(0, "--seed", help="Seed of the user sample, moments and likes."),
    requests_per_day: int = typer.Option(
        3, "--requests-per-day", min=1, max=100, help="Feed requests per user per day."
    ),
    limit: int = typer.Option(5, "--limit", min=1, max=100, help="Posts per request."),
    db_url: str = typer.Option(
        None, "--db-url", help="The gateway's database (default: $FEEDLAB_DATABASE_URL)."
    ),
    world: Path = typer.Option(
        Path("demo_world.json"),
        "--world",
        help="The demo world's spec (written by `feedlab demo-data --spec-out`): its hidden "
        "preference model decides the likes.",
    ),
    replay_movielens: Path = typer.Option(
        None,
        "--replay-movielens",
        help="MovieLens 100K folder: a served movie is liked when the user really rated it 4-5 "
        "in the replayed (held-out) days, which start at --start (default: median timestamp).",
    ),
    start: datetime = typer.Option(
        None, "--start", help="First simulated day (default: midnight after the last feed event)."
    ),
) -> None:
    """Simulated users request feeds, view them and like what their hidden taste says."""
    from feedlab.settings import database_url
    from feedlab.storage.demo import simulate as sim
    from feedlab.storage.engine import make_engine

    try:
        sim.require_loopback(url)
    except ValueError as exc:
        raise typer.BadParameter(str(exc).removeprefix("--url: "), param_hint="--url") from None
    engine = make_engine(database_url(db_url))
    try:
        if replay_movielens is not None:
            plan = sim.movielens_plan(replay_movielens, engine, start=start, days=days)
        else:
            plan = sim.demo_plan(engine, world, start=start)
    except (ValueError, FileNotFoundError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    picked = sim.sample_users(plan.user_ids, users, seed)
    try:
        summary = sim.simulate(
            url,
            picked,
            plan.judge,
            start=plan.start,
            days=days,
            requests_per_day=requests_per_day,
            limit=limit,
            seed=seed,
        )
    except sim.GatewayUnreachable as exc:
        typer.secho(f"error: the gateway stopped answering: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(summary.table())
    if summary.errors:
        raise typer.Exit(1)


def demo(
    directory: Path = typer.Option(
        Path("."), "--dir", help="Where feedlab.db, artifacts/ and reports/ go."
    ),
    users: int = typer.Option(500, "--users", min=10, help="Simulated users."),
    days: int = typer.Option(3, "--days", min=1, max=30, help="Simulated days of traffic."),
    port: int = typer.Option(8000, "--port", help="Gateway port (a free one if taken)."),
    seed: int = typer.Option(0, "--seed"),
    serve: bool = typer.Option(
        True, "--serve/--no-serve", help="Keep the gateway running after the report."
    ),
    world_users: int = typer.Option(1000, "--world-users", min=50, help="Users in the world."),
    world_posts: int = typer.Option(600, "--world-posts", min=50, help="Posts in the world."),
) -> None:
    """Build the demo world, train both arms, serve, simulate traffic, analyse, report."""
    from feedlab.demo import DemoError, run_demo

    try:
        run_demo(
            directory,
            users=users,
            days=days,
            port=port,
            seed=seed,
            serve=serve,
            world=(world_users, world_posts),
        )
    except DemoError as exc:
        typer.secho(f"demo failed: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
