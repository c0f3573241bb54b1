"""The feedlab data model (docs/architecture.md): one SQLAlchemy 2.0 metadata for SQLite
and PostgreSQL."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Computed,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "pk": "pk_%(table_name)s",
}

VIEW = "view"
LIKE = "like"
ACTIONS = (VIEW, LIKE)
MODEL_VERSION_CHARS = 64
"""Width of `exposures.model_version`."""


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    __tablename__ = "users"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    age: Mapped[int | None] = mapped_column(Integer)
    gender: Mapped[str | None] = mapped_column(String(32))
    country: Mapped[str | None] = mapped_column(String(64))
    city: Mapped[str | None] = mapped_column(String(128))
    os: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str | None] = mapped_column(String(32))
    attributes: Mapped[dict | None] = mapped_column(JSON)


class Post(Base):
    __tablename__ = "posts"

    post_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    text: Mapped[str] = mapped_column(Text, default="")
    topic: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime | None] = mapped_column(DateTime)


class FeedEvent(Base):
    """A view or a like. `event_id` makes `POST /feed` idempotent; imports may leave it NULL."""

    __tablename__ = "feed"
    __table_args__ = (
        Index("ix_feed_user_ts", "user_id", "timestamp"),
        Index("ix_feed_ts", "timestamp"),
        Index("ix_feed_event_id", "event_id", unique=True),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    timestamp: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    user_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    post_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    action: Mapped[str] = mapped_column(String(8), nullable=False)
    target: Mapped[int | None] = mapped_column(SmallInteger)
    event_id: Mapped[str | None] = mapped_column(String(64))


class Exposure(Base):
    """One served response. `ts` is the request's `time`; likes are attributed against it."""

    __tablename__ = "exposures"
    __table_args__ = (
        Index("ix_exposures_experiment_version", "experiment", "config_version"),
        Index("ix_exposures_user_ts", "user_id", "ts"),
        Index("ix_exposures_ts", "ts"),
    )

    request_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    ts: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    served_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    user_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    experiment: Mapped[str | None] = mapped_column(String(128))
    config_version: Mapped[str] = mapped_column(String(64), nullable=False)
    exp_group: Mapped[str] = mapped_column(String(64), nullable=False)
    model: Mapped[str] = mapped_column(String(64), nullable=False)
    model_version: Mapped[str | None] = mapped_column(String(MODEL_VERSION_CHARS))
    post_ids: Mapped[list] = mapped_column(JSON, nullable=False)
    n_posts: Mapped[int | None] = mapped_column(
        Integer, Computed("json_array_length(post_ids)", persisted=True)
    )
    """How many posts were served, generated and stored by the database: the analysis sums it
    over millions of exposures, and parsing each JSON array again in every analysis cost more
    than the rest of that scan."""
    fallback: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    """Interleaving: the seed of the request's team-draft coin (NULL otherwise)."""
    qa: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())
    """A QA request (header `X-Feedlab-QA: 1`): served and logged, never analysed."""


class ExposureItem(Base):
    """One served post of an exposure, so SQL can join served posts to likes on both backends."""

    __tablename__ = "exposure_items"
    __table_args__ = (Index("ix_exposure_items_user_post", "user_id", "post_id"),)

    request_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    position: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    post_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    user_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    ts: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    team: Mapped[str | None] = mapped_column(String(64))
    """Interleaving: the arm that contributed this post (NULL in an A/B exposure)."""


class ExperimentConfig(Base):
    """Every config the gateway ever served under; `config_version` is a hash of its content."""

    __tablename__ = "experiment_configs"

    config_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    loaded_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    yaml: Mapped[str] = mapped_column(Text, nullable=False)


class PostEmbedding(Base):
    """Cached sentence embedding of a post's text under one model (float32 bytes)."""

    __tablename__ = "post_embeddings"
    __table_args__ = (Index("ix_post_embeddings_model_hash", "model_name", "text_hash"),)

    post_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    model_name: Mapped[str] = mapped_column(String(256), primary_key=True)
    text_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    dim: Mapped[int] = mapped_column(Integer, nullable=False)
    vector: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


def _table(model: type[Base]) -> Table:
    """The mapped class's Table, typed as one (SQLAlchemy declares `__table__` a FromClause)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


users = _table(User)
posts = _table(Post)
feed = _table(FeedEvent)
exposures = _table(Exposure)
exposure_items = _table(ExposureItem)
experiment_configs = _table(ExperimentConfig)
post_embeddings = _table(PostEmbedding)
metadata = Base.metadata
