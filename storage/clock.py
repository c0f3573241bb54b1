"""The project's one datetime convention: naive UTC (tz-aware input is converted at the edge).

Lives in `storage/`, the bottom layer, so models, the gateway and analysis can all use it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, WithJsonSchema


def naive_utc(value: datetime) -> datetime:
    """Convert tz-aware input to naive UTC; naive input is taken to be UTC already."""
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


MIN_YEAR, MAX_YEAR = 1970, 2099
"""Accepted input timestamps: years 1970-2099 as written (so between 1969-12-31 and
2100-01-01 after conversion to UTC, which never overflows)."""
YEAR_PATTERN = r"^(19[7-9][0-9]|20[0-9][0-9])-"


def checked_utc(value: datetime) -> datetime:
    """`naive_utc`, refusing (ValueError) a year outside [MIN_YEAR, MAX_YEAR]."""
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"year must be {MIN_YEAR}-{MAX_YEAR}, got {value.isoformat()}")
    return naive_utc(value)


def _datetime_text(value: object) -> object:
    """A datetime, or a string that starts like one: pydantic would also take a number (or
    a string of digits) as Unix time."""
    if isinstance(value, datetime) or (isinstance(value, str) and re.match(YEAR_PATTERN, value)):
        return value
    raise ValueError(f"must be an ISO 8601 date-time string with a year {MIN_YEAR}-{MAX_YEAR}")


def aware_utc(value: datetime) -> datetime:
    """Naive UTC to tz-aware UTC, for output (RFC 3339 date-times carry an offset)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """Now, as naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


InputTime = Annotated[
    datetime,
    BeforeValidator(_datetime_text),
    AfterValidator(checked_utc),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": YEAR_PATTERN}),
]
"""A timestamp an API accepts: any offset (naive = UTC), years 1970-2099 as written, stored as
naive UTC."""
OutputTime = Annotated[datetime, AfterValidator(aware_utc)]
"""A timestamp an API returns: with its UTC offset."""
