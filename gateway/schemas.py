"""Typed request and response bodies of the gateway API (they are the OpenAPI schema)."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

from feedlab.storage.clock import InputTime, OutputTime
from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag

MAX_ID = 2**53 - 1
"""Ids are stored as BIGINT, but accepted only up to the largest integer every JSON parser
represents exactly (doubles), so all clients agree with the schema's bound."""

MAX_FEED_BATCH = 10_000


def _not_bool(value: object) -> object:
    """JSON `true` is not the integer 1 (pydantic's lax mode would take it)."""
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    return value


Id = Annotated[int, Field(ge=0, le=MAX_ID), BeforeValidator(_not_bool)]


class PostOut(BaseModel):
    id: int
    text: str
    topic: str | None


class RecommendationsQuery(BaseModel):
    """The query of `GET /post/recommendations/`: one model, validated in one call (FastAPI
    inspects each separate parameter's annotation again on every request)."""

    id: Annotated[int, Field(ge=0, le=MAX_ID, description="user id")]
    time: Annotated[
        InputTime | None,
        Field(
            description="ISO datetime the feed is built for (1970-01-01 to 2100-01-01 after "
            "conversion to UTC); now if unset"
        ),
    ] = None
    limit: Annotated[int, Field(ge=1, le=100)] = 5


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
    timestamp: InputTime
    user_id: Id
    post_id: Id
    action: Literal["view", "like"]
    target: Annotated[Literal[0, 1], BeforeValidator(_not_bool)] | None = None

    def content(self) -> tuple[object, ...]:
        """What a reused `event_id` must repeat to count as the same event."""
        return (self.timestamp, self.user_id, self.post_id, self.action, self.target)

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
    database: Literal["up", "down"]
    """As the exposure writer last found it (down: exposures are spooled)."""
    redis: Literal["up", "down", "off"]
    """The online state shared by replicas: off (no `FEEDLAB_REDIS_URL`), up, or down
    (degraded: served from this process's history; a like posted to another replica is not
    seen here until Redis answers again)."""
    redis_pending_events: int
    """Feed events stored while Redis was down, still to be appended to its stream."""
    started_from: Literal["database", "snapshot"]
    """snapshot: the database was down at start-up; serving from the local copy."""
    exposure_durability: Literal["async", "sync"]
    config_version: str
    config_path: str
    models: dict[str, ModelHealth]
    posts: int
    history_events: int
    exposure_queue_depth: int
    exposure_spool_files: int
    exposures_dead_lettered: int
    """Records the database refused for their content, kept in the dead-letter file."""


class ErrorOut(BaseModel):
    detail: str


class ValidationErrorOut(BaseModel):
    """A 422: `message` names each bad field; `detail` is pydantic's error list."""

    message: str
    detail: list[dict[str, Any]]


class ConfigIssueOut(BaseModel):
    field: str
    line: int | None
    message: str


class ConfigErrorOut(BaseModel):
    at: OutputTime | None
    message: str
    issues: list[ConfigIssueOut]


class AdminConfigOut(BaseModel):
    config_version: str
    config_path: str
    loaded_at: OutputTime
    yaml: str
    config: dict[str, Any]
    versions: list[tuple[str, OutputTime]]
    last_error: ConfigErrorOut | None


class ReloadOut(BaseModel):
    status: Literal["ok", "refused"]
    config_version: str
    changed: bool
    error: ConfigErrorOut | None = None
