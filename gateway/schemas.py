"""Typed request and response bodies of the gateway API (they are the OpenAPI schema)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any, Literal

from feedlab.storage.clock import naive_utc
from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag

MAX_ID = 2**63 - 1
"""Ids are stored as BIGINT."""

MAX_FEED_BATCH = 10_000


NaiveUTC = Annotated[datetime, AfterValidator(naive_utc)]
Id = Annotated[int, Field(ge=0, le=MAX_ID)]


class PostOut(BaseModel):
    id: int
    text: str
    topic: str | None


class RecommendationsOut(BaseModel):
    """The response contract (docs/architecture.md); the request id is in `X-Request-ID`."""

    exp_group: str
    recommendations: list[PostOut]


class FeedEventIn(BaseModel):
    """A view or a like. Without `event_id`, one is derived from the other fields, so an
    exact resend is still stored once."""

    model_config = ConfigDict(extra="forbid")

    event_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00]+$")] | None = (
        None
    )
    timestamp: NaiveUTC
    user_id: Id
    post_id: Id
    action: Literal["view", "like"]
    target: Literal[0, 1] | None = None

    def key(self) -> str:
        if self.event_id is not None:
            return self.event_id
        raw = f"{self.timestamp.isoformat()}|{self.user_id}|{self.post_id}|{self.action}"
        return "h:" + hashlib.sha1(raw.encode()).hexdigest()


FEED_BODY_TAGS = ("event", "events")
"""The branch tags pydantic puts in the location of a bad `POST /feed` body."""

FeedBody = Annotated[
    Annotated[FeedEventIn, Tag("event")]
    | Annotated[list[FeedEventIn], Field(min_length=1, max_length=MAX_FEED_BATCH), Tag("events")],
    # validate against the one branch the JSON's shape selects: errors of that branch only
    Discriminator(lambda body: "events" if isinstance(body, list) else "event"),
    Field(description="One feed event or a list of them."),
]


class FeedOut(BaseModel):
    received: int
    stored: int
    duplicates: int


class ModelHealth(BaseModel):
    backend: Literal["inprocess", "http"]
    version: str | None


class HealthOut(BaseModel):
    status: Literal["ok"]
    config_version: str
    config_path: str
    models: dict[str, ModelHealth]
    posts: int
    history_events: int
    exposure_queue_depth: int
    exposure_spool_files: int


class ConfigIssueOut(BaseModel):
    field: str
    line: int | None
    message: str


class ConfigErrorOut(BaseModel):
    at: datetime | None
    message: str
    issues: list[ConfigIssueOut]


class AdminConfigOut(BaseModel):
    config_version: str
    config_path: str
    loaded_at: datetime
    yaml: str
    config: dict[str, Any]
    versions: list[tuple[str, datetime]]
    last_error: ConfigErrorOut | None


class ReloadOut(BaseModel):
    status: Literal["ok", "refused"]
    config_version: str
    changed: bool
    error: ConfigErrorOut | None = None
