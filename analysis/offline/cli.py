"""`feedlab evaluate`: rolling-origin HitRate@K of a model against the baselines."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import typer

URL_HELP = "Database URL (default: $FEEDLAB_DATABASE_URL or sqlite:///feedlab.db)."


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)


def evaluate_command(
    model: list[str] = typer.Option(
        [],
        "--model",
        help="Model to evaluate: popular | popular-all | random | control | test "
        "(repeatable; NAME:ARTIFACT_DIR overrides the artifact).",
    ),
    artifact: Path = typer.Option(
        None, "--artifact", help="Artifact folder of the (single) --model (default artifacts/NAME)."
    ),
    t0: datetime = typer.Option(
        None, "--t0", help="First window start (default: median view time)."
    ),
    window_days: float = typer.Option(7.0, "--window-days", min=0.01, help="Window length W."),
    k: int = typer.Option(5, "--k", min=1, max=100, help="Posts recommended per pair."),
    compare: tuple[str, str] | None = typer.Option(
        None,
        "--compare",
        help="Two models A B: paired bootstrap CI of HitRate(A) - HitRate(B).",
    ),
    retrain_every: str = typer.Option(
        None,
        "--retrain-every",
        help="Also evaluate each arm refitted every such step (e.g. 7d) on the events before "
        "it, with its artifact's settings, beside the model trained once.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    url: str = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """Rolling-origin HitRate@K (docs/architecture.md) with baselines on the same pairs."""
    from feedlab.analysis.offline.report import (
        ModelSpec,
        below_popular_text,
        comparison_text,
        run,
        table,
    )
    from feedlab.analysis.online.cli import parse_duration
    from feedlab.models.catalog import PostCatalog, UserProfiles
    from feedlab.models.history import History
    from feedlab.storage.engine import make_engine
    from rich.console import Console

    from feedlab.settings import database_url

    every = None
    if retrain_every is not None:
        every = timedelta(seconds=parse_duration(retrain_every, "--retrain-every"))
    pair = None if not compare or compare[0] is None else (compare[0], compare[1])
    specs = [ModelSpec.parse(n) for n in model]
    if artifact is not None:
        if len(specs) != 1:
            raise typer.BadParameter(
                "give exactly one --model with --artifact", param_hint="--artifact"
            )
        specs[0].artifact = artifact
    specs += [ModelSpec.parse(n) for n in (pair or ()) if n not in {s.name for s in specs}]
    engine = make_engine(database_url(url))
    try:
        history = History.from_engine(engine)
        posts = PostCatalog.from_engine(engine)
        users = UserProfiles.from_engine(engine)
    finally:
        engine.dispose()
    if len(history) == 0:
        raise typer.BadParameter("the feed table is empty: import data first", param_hint="--url")
    try:
        report = run(
            history,
            specs,
            t0,
            timedelta(days=window_days),
            k,
            posts,
            users,
            pair,
            not as_json,
            every,
        )
    except (ValueError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    console = Console()
    console.print(table(report))
    for line in below_popular_text(report):
        console.print(line, style="bold red" if line.startswith("WARNING") else None)
    text = comparison_text(report)
    if text:
        console.print(text)
