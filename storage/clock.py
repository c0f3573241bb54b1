"""The project's one datetime convention: naive UTC (tz-aware input is converted at the edge).

Lives in `storage/`, the bottom layer, so models, the gateway and analysis can all use it.
"""

from __future__ import annotations

from datetime import UTC, datetime


def naive_utc(value: datetime) -> datetime:
    """Convert tz-aware input to naive UTC; naive input is taken to be UTC already."""
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def utcnow() -> datetime:
    """Now, as naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)
