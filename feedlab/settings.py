"""The one reader of the environment: every `FEEDLAB_*` variable the product uses, typed.

Commands and the gateway build a settings object once and pass it on; nothing else in the
product looks at `os.environ`. The README's configuration table lists every variable.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///feedlab.db"


class DatabaseSettings(BaseSettings):
    """Where the data lives: `FEEDLAB_DATABASE_URL`."""

    model_config = SettingsConfigDict(
        env_prefix="FEEDLAB_", env_ignore_empty=True, extra="ignore", frozen=True
    )

    database_url: str = DEFAULT_DATABASE_URL
    """SQLAlchemy URL: a SQLite file or `postgresql+psycopg2://...`."""


def database_url(url: str | None = None) -> str:
    """The URL a command uses: its `--url`, else `FEEDLAB_DATABASE_URL`, else the default."""
    return url or DatabaseSettings().database_url
