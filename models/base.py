"""The interface both arms (and the `popular` fallback) share, as the gateway sees them.

Conventions every part of feedlab keeps: datetimes are naive UTC; post and user ids are ints.
The gateway owns one `models.history.History` (built from the `feed` table at start-up and fed
by `POST /feed`) and hands it to every in-process model it loads through
`models.registry.load_model`; models read everything about users from that History at request
time and keep no state of their own beside it. A standalone model service owns its own
History.
"""

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
    post the user liked before `at`, and never repeats a post. A model may also accept a
    keyword `exclude: Collection[int] | None` of further posts to leave out (the offline
    evaluator passes the posts seen before `at`; otherwise it asks for more and filters)."""

    name: str
    version: str

    def recommend(self, user_id: int, at: datetime, limit: int) -> list[int]: ...
