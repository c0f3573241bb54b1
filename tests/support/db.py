"""Databases for tests: an engine whose schema is at the latest migration."""

from __future__ import annotations

from feedlab.storage.engine import make_engine, upgrade
from sqlalchemy import Engine


def migrated(url: str) -> Engine:
    """`make_engine` plus the explicit migration the product runs at `init-db` or start-up."""
    engine = make_engine(url)
    upgrade(engine)
    return engine
