"""`feedlab dashboard`: serve the experiment list and live reports to analysts."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard)


def dashboard(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8050, "--port", help="TCP port."),
    url: str = typer.Option(None, "--url", help="Database URL (default $FEEDLAB_DATABASE_URL)."),
    log_level: str = typer.Option("info", "--log-level"),
) -> None:
    """Web page listing the experiments (phases, status, traffic) with each one's report."""
    import uvicorn
    from feedlab.analysis.dashboard.app import create_dashboard

    typer.echo(f"dashboard: http://{host}:{port}/", err=True)
    uvicorn.run(create_dashboard(url), host=host, port=port, log_level=log_level)
