"""A model as a standalone HTTP service (`feedlab serve-model NAME`), for the gateway's `http`
backend. It owns its own History, loaded from the database at start-up and kept current by
following the `feed` table as gateway workers do (`gateway.feed_sync`): the table is the
source of truth, so a service that was down or slow still gets every stored event, once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Literal

from fastapi import FastAPI, Query, Request
from feedlab.models.base import Event
from feedlab.models.threads import one_blas_thread
from feedlab.storage.clock import InputTime, utcnow
from pydantic import BaseModel

MAX_ID = 2**63 - 1


class RecommendOut(BaseModel):
    post_ids: list[int]
    model: str
    version: str


class ServiceHealth(BaseModel):
    status: Literal["ok"]
    model: str
    version: str
    history_events: int


def create_service_app(
    name: str, artifact: str | Path | None, *, database_url: str, feed_sync: float = 0.1
) -> FastAPI:
    """The service app for model `name` (loaded with `models.registry.load_model`) over the
    history stored at `database_url`, polling its feed table every `feed_sync` seconds."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from feedlab.gateway.feed_sync import FeedFollower, follow_feed, last_feed_id
        from feedlab.models.catalog import PostCatalog
        from feedlab.models.history import History
        from feedlab.models.registry import load_warm
        from feedlab.storage.engine import make_engine

        def load():
            start = last_feed_id(engine)
            history = History.from_engine(engine, through_id=start)
            posts = PostCatalog.from_engine(engine)
            return FeedFollower(engine, start), history, load_warm(name, artifact, history, posts)

        async def apply(events: list[Event]) -> None:
            app.state.history.add(events)

        one_blas_thread()
        engine = make_engine(database_url, pre_ping=False)  # the follower pings, bounded
        stop = asyncio.Event()
        try:
            follower, app.state.history, app.state.model = await asyncio.to_thread(load)
            task = asyncio.create_task(follow_feed(follower, feed_sync, stop, apply))
            yield
            stop.set()
            await task
        finally:
            engine.dispose()

    app = FastAPI(title=f"feedlab model service: {name}", lifespan=lifespan)

    @app.get("/recommend", response_model=RecommendOut)
    async def recommend(
        request: Request,
        user_id: Annotated[int, Query(ge=0, le=MAX_ID)],
        at: Annotated[InputTime | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 5,
    ) -> RecommendOut:
        """Post ids for `user_id` at time `at` (now if unset), using history before `at` only."""
        model = request.app.state.model
        when = at or utcnow()
        ids = model.recommend(user_id, when, limit)
        return RecommendOut(post_ids=[int(p) for p in ids], model=model.name, version=model.version)

    @app.get("/health", response_model=ServiceHealth)
    async def health(request: Request) -> ServiceHealth:
        model = request.app.state.model
        return ServiceHealth(
            status="ok",
            model=model.name,
            version=model.version,
            history_events=len(request.app.state.history),
        )

    return app
