"""Gateway settings: what `feedlab serve` reads from its flags and `FEEDLAB_*` variables."""

from __future__ import annotations

from pathlib import Path

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
    feed_sync_interval: float | None = Field(None, gt=0)
    """Seconds between polls of the feed table for events sibling workers stored (set by
    `feedlab serve --workers N`); None: one process, nothing to poll."""
