"""The interface both arms (and the `popular` fallback) share, as the gateway sees them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Event:
    """A feed event as models consume it (`action` is 'view' or 'like')."""

    timestamp: datetime
    user_id: int
    post_id: int
    action: str


@runtime_checkable
class Recommender(Protocol):
    """A loaded model. `recommend` uses only history strictly before `at`, never returns a
    post the user liked before `at`, and never repeats a post."""

    name: str
    version: str

    def recommend(self, user_id: int, at: datetime, limit: int) -> list[int]: ...

    def observe(self, events: list[Event]) -> None:
        """Take new feed events (e.g. from `POST /feed`) so recent likes stay fresh."""
        ...
