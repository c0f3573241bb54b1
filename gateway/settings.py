"""Gateway settings: what `feedlab serve` reads from its flags and `FEEDLAB_*` variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from feedlab.experiments.config import DEFAULT_CONFIG
from pydantic import AliasChoices, Field

from feedlab.settings import DatabaseSettings


class Settings(DatabaseSettings):
    """Everything `create_app` needs. Keyword arguments win over the environment, which wins
    over the defaults; worker processes receive the parent's object, not the environment."""

    config_path: Path = Field(
        DEFAULT_CONFIG, validation_alias=AliasChoices("config_path", "FEEDLAB_EXPERIMENTS")
    )
    """The experiments YAML ($FEEDLAB_EXPERIMENTS)."""
    admin_token: str | None = None
    """None or empty: the /admin endpoints answer 403 "disabled"."""
    spool_dir: Path = Path("spool")
    """Where exposures go while the database is unreachable (replayed when it returns)."""
    watch_config: bool = True
    """Reload the experiments file when it changes (else only on POST /admin/reload)."""
    exposure_flush_interval: float = Field(0.1, gt=0)
    exposure_batch_size: int = Field(500, gt=0)
    exposure_queue_size: int = Field(100_000, gt=0)
    db_retry_interval: float = Field(1.0, gt=0)
    exposure_durability: Literal["async", "sync"] = "async"
    """async: the response does not wait for the log (a kill -9 loses at most
    `exposure_flush_interval` + one write of traffic); sync: each exposure is fsynced to the
    local journal before the response (0 lost)."""
    db_timeout: float = Field(5.0, gt=0)
    """Bound on every database call of the gateway: statement timeout, TCP user timeout and a
    hard socket cut-off (a hung database becomes an error, then spooling)."""
    db_connect_timeout: float = Field(3.0, gt=0)
    shutdown_grace: float = Field(5.0, gt=0)
    """Seconds the exposure writer gets at shutdown before what is left is spooled; with
    `db_timeout` it fits Docker's default 10 s stop."""
    snapshot_path: Path | None = None
    """Folder of the shared history snapshot (memory-mapped by every worker) and of what each
    start with the database adds to it, used to start while the database is down (see
    `gateway.snapshot`). None: `<spool_dir>/snapshot`."""
    startup_retry_max: float = Field(30.0, gt=0)
    """Longest wait between start-up attempts while the database is down and no snapshot
    exists (the backoff doubles from 0.5 s up to this)."""
    feed_gap_timeout: float = Field(60.0, gt=0)
    """How long a missing feed id below the highest one seen is awaited before the follower
    moves past it (a transaction still open, or an id burnt by a rollback / conflict)."""
    feed_sync_interval: float | None = Field(None, gt=0)
    """Seconds between polls of the feed table for events sibling workers stored (set by
    `feedlab serve --workers N`); None: one process, nothing to poll."""
    redis_url: str | None = None
    """Redis holding the online state shared by gateway replicas (e.g.
    `redis://127.0.0.1:6379/0`); None: each process keeps its own (and with several workers
    polls the feed table, see `feed_sync_interval`)."""
    redis_prefix: str = "feedlab:"
    """Prepended to every Redis key, so several deployments (or tests) share one server."""
    redis_timeout: float = Field(0.25, gt=0)
    """Bound on every Redis call: a request never waits longer for Redis."""
    redis_retry_interval: float = Field(1.0, gt=0)
    """After a failed Redis call, seconds during which Redis is not asked again (requests are
    served from local state meanwhile)."""
    redis_retention: float = Field(2 * 86400, gt=0)
    """Seconds of feed events the Redis stream keeps (a replica that starts from the local
    snapshot reads them back)."""
