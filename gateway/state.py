"""What one gateway process holds in memory, loaded once at start-up.

Requests never query the database: posts (for texts/topics of the response), the set of known
users and the feed history are loaded here (from the database, or from the local snapshot
while it is down), and kept fresh by `POST /feed`, or with Redis configured by the stream all
replicas share (`gateway.online`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from feedlab.gateway.backends import InprocessBackend
from feedlab.gateway.dbutil import pg_connect_args
from feedlab.gateway.exposures import ExposureLog
from feedlab.gateway.feed_sync import FeedFollower
from feedlab.gateway.metrics import GatewayMetrics
from feedlab.gateway.online import OnlineState, last_entry
from feedlab.gateway.runtime import RuntimeHolder
from feedlab.gateway.settings import Settings
from feedlab.gateway.snapshot import StartData
from feedlab.models.catalog import PostCatalog
from feedlab.models.history import History
from feedlab.models.registry import load_model
from feedlab.storage.engine import make_engine, upgrade
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger("feedlab.gateway")


class DatabaseUnavailable(RuntimeError):
    """The database is down at start-up and there is no local snapshot to start from."""


def gateway_engine(settings: Settings) -> Engine:
    """The gateway's engine: on PostgreSQL every call is bounded (connect and statement
    timeouts, keepalives, `tcp_user_timeout`, and `dbutil.bounded` for the calls that must
    not hang, which pings pooled connections itself). Not migrated here."""
    url = settings.database_url
    args = pg_connect_args(url, settings.db_connect_timeout, settings.db_timeout)
    return make_engine(url, connect_args=args, pre_ping=False)


def migrate(settings: Settings) -> None:
    """Bring the schema up to date (the gateway's start is one of the places it is migrated),
    on its own engine: a migration may take longer than the gateway's statement timeout, only
    the connection attempt is bounded."""
    url = settings.database_url
    args = pg_connect_args(url, settings.db_connect_timeout, settings.db_timeout)
    args = {k: v for k, v in args.items() if k not in ("options", "tcp_user_timeout")}
    engine = make_engine(url, connect_args=args)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


def snapshot_path(settings: Settings) -> Path:
    return settings.snapshot_path or settings.spool_dir / "snapshot"


@dataclass
class GatewayState:
    settings: Settings
    engine: Engine
    history: History
    posts: PostCatalog
    post_json: dict[int, dict[str, Any]]
    known_users: set[int]
    popular: InprocessBackend
    exposure_log: ExposureLog
    metrics: GatewayMetrics
    started_from: Literal["database", "snapshot"] = "database"
    follower: FeedFollower | None = None
    online: OnlineState | None = None
    holder: RuntimeHolder = field(init=False)

    def __post_init__(self) -> None:
        self.holder = RuntimeHolder(self.settings.config_path, self.history, self.posts)

    @classmethod
    def load(cls, settings: Settings) -> GatewayState:
        """From the database and the shared snapshot (built or rebuilt when it does not match
        the database), else from the snapshot alone; raises DatabaseUnavailable when neither
        is there."""
        engine = gateway_engine(settings)
        path = snapshot_path(settings)
        metrics = GatewayMetrics()
        mark = None  # where this replica follows the Redis stream from
        if settings.redis_url:
            url, prefix = settings.redis_url, settings.redis_prefix
            mark = last_entry(url, prefix, settings.redis_timeout, metrics)
        try:
            migrate(settings)
            data = StartData.from_database(engine, path)
        except SQLAlchemyError as exc:
            if not path.exists():
                engine.dispose()
                msg = f"database unavailable, no snapshot at {path}: {exc}"
                raise DatabaseUnavailable(msg) from exc
            log.warning("database unavailable (%s): starting from the snapshot %s", exc, path)
            try:
                data = StartData.load(path)
            except Exception as bad:  # a damaged copy is no copy: wait for the database
                engine.dispose()
                msg = f"database unavailable and snapshot {path} unreadable: {bad}"
                raise DatabaseUnavailable(msg) from bad
            started_from: Literal["database", "snapshot"] = "snapshot"
        else:
            started_from = "database"
        posts, history = data.posts, data.history
        follower = None
        if settings.feed_sync_interval and not settings.redis_url:
            follower = FeedFollower(
                engine, data.through_id, settings.db_timeout, settings.feed_gap_timeout
            )
        post_json = {
            int(pid): {"id": int(pid), "text": text, "topic": topic}
            for pid, text, topic in zip(posts.post_ids, posts.texts, posts.topics, strict=True)
        }
        log.info(
            "loaded %d posts, %d users, %d feed events from the %s",
            len(posts),
            len(data.known_users),
            len(history),
            started_from,
        )
        exposure_log = ExposureLog(
            engine,
            settings.spool_dir,
            durability=settings.exposure_durability,
            max_queue=settings.exposure_queue_size,
            batch_size=settings.exposure_batch_size,
            flush_interval=settings.exposure_flush_interval,
            retry_interval=settings.db_retry_interval,
            db_timeout=settings.db_timeout,
        )
        metrics.watch_exposures(exposure_log)
        online = None
        if settings.redis_url:
            online = OnlineState(
                settings.redis_url,
                settings.redis_prefix,
                metrics,
                timeout=settings.redis_timeout,
                retry_interval=settings.redis_retry_interval,
                retention=settings.redis_retention,
                after=mark if started_from == "database" else None,
            )
        return cls(
            settings=settings,
            engine=engine,
            history=history,
            posts=posts,
            post_json=post_json,
            known_users=data.known_users,
            popular=InprocessBackend("popular", load_model("popular", None, history, posts)),
            exposure_log=exposure_log,
            metrics=metrics,
            started_from=started_from,
            follower=follower,
            online=online,
        )

    def is_known(self, user_id: int) -> bool:
        """A user with a profile or any feed event; others get cold-start recommendations."""
        return user_id in self.known_users or self.history.users.get(user_id) >= 0
