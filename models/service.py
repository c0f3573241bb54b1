"""A model as a standalone HTTP service (`feedlab serve-model NAME`), for the gateway's `http`
backend. It owns its own History, loaded from the database at start-up and fed by the gateway
through `POST /events`; it never imports the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import FastAPI, Query, Request
from feedlab.models.base import Event
from feedlab.models.threads import one_blas_thread
from feedlab.storage.clock import naive_utc, utcnow
from pydantic import AfterValidator, BaseModel, Field

MAX_ID = 2**63 - 1


class EventIn(BaseModel):
    timestamp: Annotated[datetime, AfterValidator(naive_utc)]
    user_id: Annotated[int, Field(ge=0, le=MAX_ID)]
    post_id: Annotated[int, Field(ge=0, le=MAX_ID)]
    action: Literal["view", "like"]


class RecommendOut(BaseModel):
    post_ids: list[int]
    model: str
    version: str


class EventsOut(BaseModel):
    added: int


class ServiceHealth(BaseModel):
    status: Literal["ok"]
    model: str
    version: str
    history_events: int


def create_service_app(name: str, artifact: str | Path | None, *, database_url: str) -> FastAPI:
    """The service app for model `name` (loaded with `models.registry.load_model`) over the
    history stored at `database_url`."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        def load():
            from feedlab.models.catalog import PostCatalog
            from feedlab.models.history import History
            from feedlab.models.registry import load_warm
            from feedlab.storage.engine import make_engine

            engine = make_engine(database_url)
            try:
                history = History.from_engine(engine)
                posts = PostCatalog.from_engine(engine)
            finally:
                engine.dispose()
            return history, load_warm(name, artifact, history, posts)

        one_blas_thread()
        app.state.history, app.state.model = await asyncio.to_thread(load)
        yield

    app = FastAPI(title=f"feedlab model service: {name}", lifespan=lifespan)

    @app.get("/recommend", response_model=RecommendOut)
    async def recommend(
        request: Request,
        user_id: Annotated[int, Query(ge=0, le=MAX_ID)],
        at: Annotated[datetime | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 5,
    ) -> RecommendOut:
        """Post ids for `user_id` at time `at` (now if unset), using history before `at` only."""
        model = request.app.state.model
        when = naive_utc(at) if at is not None else utcnow()
        ids = model.recommend(user_id, when, limit)
        return RecommendOut(post_ids=[int(p) for p in ids], model=model.name, version=model.version)

    @app.post("/events", response_model=EventsOut)
    async def events(request: Request, body: list[EventIn]) -> EventsOut:
        """Feed events the gateway stored; they count for requests from now on."""
        evs = [Event(e.timestamp, e.user_id, e.post_id, e.action) for e in body]
        request.app.state.history.add(evs)
        return EventsOut(added=len(evs))

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
