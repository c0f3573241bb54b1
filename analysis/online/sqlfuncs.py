"""The few SQL expressions SQLite and PostgreSQL spell differently, as compiled constructs, so
the analysis queries are one SQLAlchemy Core text for both backends."""

from __future__ import annotations

from typing import Any

from sqlalchemy import DateTime, Integer
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


class add_seconds(FunctionElement):
    """timestamp + n seconds. SQLite keeps timestamps as ISO text; strftime with %f yields
    millisecond text that still sorts correctly against SQLAlchemy's stored microseconds."""

    type = DateTime()
    inherit_cache = True


@compiles(add_seconds, "sqlite")
def _add_seconds_sqlite(element: add_seconds, compiler: Any, **kw: Any) -> str:
    ts, secs = list(element.clauses)
    return (
        f"strftime('%Y-%m-%d %H:%M:%f', {compiler.process(ts, **kw)}, "
        f"'+' || ({compiler.process(secs, **kw)}) || ' seconds')"
    )


@compiles(add_seconds, "postgresql")
def _add_seconds_pg(element: add_seconds, compiler: Any, **kw: Any) -> str:
    ts, secs = list(element.clauses)
    return (
        f"({compiler.process(ts, **kw)} + "
        f"make_interval(secs => CAST({compiler.process(secs, **kw)} AS double precision)))"
    )


class day_of(FunctionElement):
    """UTC day number (days since 1970-01-01) of a naive-UTC timestamp: an integer is cheaper
    to compute, group and sort over millions of rows than a formatted date string."""

    type = Integer()
    inherit_cache = True


@compiles(day_of, "sqlite")
def _day_sqlite(element: day_of, compiler: Any, **kw: Any) -> str:
    ts = compiler.process(next(iter(element.clauses)), **kw)
    return f"CAST(julianday(date({ts})) - 2440587.5 AS INTEGER)"


@compiles(day_of, "postgresql")
def _day_pg(element: day_of, compiler: Any, **kw: Any) -> str:
    return (
        f"(CAST({compiler.process(next(iter(element.clauses)), **kw)} AS date) - DATE '1970-01-01')"
    )
