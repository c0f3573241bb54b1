"""Gateway settings: what `feedlab serve` reads from flags and the environment."""

from __future__ import annotations

import os
from pathlib import Path

from feedlab.experiments.config import DEFAULT_CONFIG
from pydantic import BaseModel, Field


class Settings(BaseModel):
    """Everything `create_app` needs; `from_env` fills the defaults a deployment sets."""

    database_url: str | None = None
    """None: $FEEDLAB_DATABASE_URL, else the SQLite default (storage.engine)."""
    config_path: Path = DEFAULT_CONFIG
    admin_token: str | None = None
    """None or empty: the /admin endpoints answer 403 "disabled"."""
    spool_dir: Path = Path("spool")
    """Where exposures go while the database is unreachable (replayed when it returns)."""
    watch_config: bool = True
    exposure_flush_interval: float = Field(0.1, gt=0)
    exposure_batch_size: int = Field(500, gt=0)
    exposure_queue_size: int = Field(100_000, gt=0)
    db_retry_interval: float = Field(1.0, gt=0)
    feed_sync_interval: float | None = Field(None, gt=0)
    """Seconds between polls of the feed table for events sibling workers stored (set by
    `feedlab serve --workers N`); None: one process, nothing to poll."""

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        env = {
            "database_url": os.environ.get("FEEDLAB_DATABASE_URL"),
            "admin_token": os.environ.get("FEEDLAB_ADMIN_TOKEN") or None,
            "spool_dir": os.environ.get("FEEDLAB_SPOOL_DIR") or "spool",
            "feed_sync_interval": os.environ.get("FEEDLAB_FEED_SYNC_INTERVAL") or None,
        }
        if os.environ.get("FEEDLAB_WATCH_CONFIG"):
            env["watch_config"] = os.environ["FEEDLAB_WATCH_CONFIG"] not in ("0", "false")
        if os.environ.get("FEEDLAB_EXPERIMENTS"):
            env["config_path"] = os.environ["FEEDLAB_EXPERIMENTS"]
        env.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(env)
