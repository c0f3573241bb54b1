"""The one reader of the environment: every `FEEDLAB_*` variable the product uses, typed.

Commands and the gateway build a settings object once and pass it on; nothing else in the
product looks at `os.environ`. The README's configuration table lists every variable.
"""

from __future__ import annotations

from pydantic import ValidationError
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


def describe_error(settings: type[BaseSettings], exc: ValidationError) -> str:
    """One line per bad value, naming the variable (or flag) it came from."""
    lines = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        alias = settings.model_fields[field].validation_alias if field else None
        names = getattr(alias, "choices", None) or [f"FEEDLAB_{field.upper()}"]
        variable = next((n for n in names if str(n).startswith("FEEDLAB_")), field)
        lines.append(f"{variable} ({field}): {err['msg']}")
    return "invalid settings:\n  " + "\n  ".join(lines)
