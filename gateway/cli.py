"""`feedlab serve` (the gateway) and `feedlab serve-model` (one model as an HTTP service)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("serve-model")(serve_model)
    snapshot = typer.Typer(help="The gateway's shared history snapshot.", no_args_is_help=True)
    snapshot.command("build")(snapshot_build)
    app.add_typer(snapshot, name="snapshot")


def snapshot_build(
    folder: Path = typer.Option(
        None,
        "--folder",
        help="Snapshot folder (default: $FEEDLAB_SNAPSHOT_PATH or <spool dir>/snapshot).",
    ),
    spool_dir: Path = typer.Option(None, "--spool-dir", help="Default: ./spool."),
) -> None:
    """Build the history snapshot of $FEEDLAB_DATABASE_URL that gateway workers map, ahead of
    a start (a start builds it itself when it is missing or stale, while the others wait)."""
    import time

    from feedlab.gateway.settings import Settings
    from feedlab.gateway.snapshot import build, locked
    from feedlab.gateway.state import migrate, snapshot_path
    from feedlab.storage.engine import make_engine

    flags: dict[str, Any] = {"snapshot_path": folder, "spool_dir": spool_dir}
    settings = Settings(**{k: v for k, v in flags.items() if v is not None})
    path = snapshot_path(settings)
    migrate(settings)
    engine = make_engine(settings.database_url)
    started = time.perf_counter()
    try:
        with locked(path):
            built = build(engine, path)
    finally:
        engine.dispose()
    size = sum(f.stat().st_size for f in built.iterdir())
    typer.echo(f"{built}: {size / 2**20:.0f} MB in {time.perf_counter() - started:.1f} s")


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    config: Path = typer.Option(
        None, "--config", help="Experiments YAML (default: experiments/experiments.yaml)."
    ),
    spool_dir: Path = typer.Option(
        None, "--spool-dir", help="Exposure spool while the DB is down (default: ./spool)."
    ),
    no_watch: bool = typer.Option(False, "--no-watch", help="Reload only on /admin/reload."),
    workers: int = typer.Option(
        1,
        "--workers",
        min=1,
        help="Gateway processes sharing the port (one per core); each loads the models, and "
        "they see each other's feed events within --feed-sync seconds (with "
        "$FEEDLAB_REDIS_URL: on their next request, through Redis).",
    ),
    feed_sync: float = typer.Option(
        0.1,
        "--feed-sync",
        min=0.01,
        help="With --workers > 1 and no $FEEDLAB_REDIS_URL: seconds between feed polls.",
    ),
    durability: str = typer.Option(
        None,
        "--durability",
        help="Exposure log: async (default; a kill -9 may lose the last ~0.1 s of exposures) or "
        "sync (fsynced before each response; none lost). Env: FEEDLAB_EXPOSURE_DURABILITY.",
    ),
    log_level: str = typer.Option("info", "--log-level"),
    access_log: bool = typer.Option(
        True, "--access-log/--no-access-log", help="Log every request (uvicorn's access log)."
    ),
) -> None:
    """Run the gateway on $FEEDLAB_DATABASE_URL (admin endpoints need $FEEDLAB_ADMIN_TOKEN)."""
    import functools

    import uvicorn
    from feedlab.experiments.config import ConfigError, load_config
    from feedlab.gateway.app import create_app
    from feedlab.gateway.settings import Settings
    from pydantic import ValidationError

    from feedlab.settings import describe_error

    flags: dict[str, Any] = {
        "config_path": config,
        "spool_dir": spool_dir,
        "watch_config": False if no_watch else None,
        "exposure_durability": durability,
    }
    try:
        settings = Settings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        typer.echo(describe_error(Settings, exc), err=True)
        raise typer.Exit(2) from None
    try:
        load_config(settings.config_path)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    _log_to_stderr(log_level)
    if workers == 1:
        uvicorn.run(
            create_app(settings), host=host, port=port, log_level=log_level, access_log=access_log
        )
        return
    # uvicorn's supervisor pickles the config into each worker process: the workers get these
    # settings (absolute paths, the feed poll on), not the environment
    from uvicorn.supervisors import Multiprocess

    settings = settings.model_copy(
        update={
            "config_path": settings.config_path.resolve(),
            "spool_dir": settings.spool_dir.resolve(),
            "feed_sync_interval": feed_sync,
        }
    )
    factory = functools.partial(create_app, settings)
    server = uvicorn.Config(
        factory,
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
    )
    Multiprocess(server, sockets=[server.bind_socket()]).run()


def serve_model(
    name: str = typer.Argument(..., help="Model name: popular | control | test | ..."),
    port: int = typer.Option(8100, "--port", help="TCP port."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    artifact: Path = typer.Option(
        None, "--artifact", help="Artifact folder (default for control/test: artifacts/NAME)."
    ),
    feed_sync: float = typer.Option(
        0.1, "--feed-sync", min=0.01, help="Seconds between polls of the feed table."
    ),
    log_level: str = typer.Option("info", "--log-level"),
) -> None:
    """Serve one model over HTTP (GET /recommend, GET /health); it follows the feed table."""
    import uvicorn
    from feedlab.models.registry import ARMS
    from feedlab.models.service import create_service_app

    from feedlab.settings import DatabaseSettings

    if artifact is None and name in ARMS:
        artifact = Path("artifacts") / name

    _log_to_stderr(log_level)
    url = DatabaseSettings().database_url
    app = create_service_app(name, artifact, database_url=url, feed_sync=feed_sync)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def _log_to_stderr(level: str) -> None:
    """uvicorn configures only its own loggers; show feedlab's (reloads, spool, fallbacks)."""
    import logging

    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
