"""What one gateway process holds in memory, loaded once at start-up.

Requests never query the database: posts (for texts/topics of the response), the set of known
users and the feed history are loaded here, and kept fresh by `POST /feed`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from feedlab.gateway.backends import InprocessBackend
from feedlab.gateway.exposures import ExposureLog
from feedlab.gateway.feed_sync import FeedFollower, last_feed_id
from feedlab.gateway.metrics import GatewayMetrics
from feedlab.gateway.runtime import RuntimeHolder
from feedlab.gateway.settings import Settings
from feedlab.models.catalog import PostCatalog
from feedlab.models.history import History
from feedlab.models.registry import load_model
from feedlab.storage.engine import make_engine, upgrade
from feedlab.storage.schema import users
from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url

log = logging.getLogger("feedlab.gateway")

PG_CONNECT_TIMEOUT_S = "3"


def gateway_engine(url: str) -> Engine:
    """The engine; on PostgreSQL with a connect timeout, so an unreachable server fails fast
    (and exposures go to the spool) instead of hanging a writer."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        url = parsed.update_query_dict({"connect_timeout": PG_CONNECT_TIMEOUT_S}).render_as_string(
            hide_password=False
        )
    return make_engine(url)


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
    follower: FeedFollower | None = None
    holder: RuntimeHolder = field(init=False)

    def __post_init__(self) -> None:
        self.holder = RuntimeHolder(self.settings.config_path, self.history, self.posts)

    @classmethod
    def load(cls, settings: Settings) -> GatewayState:
        engine = gateway_engine(settings.database_url)
        upgrade(engine)  # the gateway's start is one of the places the schema is migrated
        posts = PostCatalog.from_engine(engine)
        follower = None
        if settings.feed_sync_interval:
            start = last_feed_id(engine)
            follower = FeedFollower(engine, start)
            history = History.from_engine(engine, through_id=start)
        else:
            history = History.from_engine(engine)
        with engine.connect() as conn:
            known = set(conn.execute(select(users.c.user_id)).scalars())
        post_json = {
            int(pid): {"id": int(pid), "text": text, "topic": topic}
            for pid, text, topic in zip(posts.post_ids, posts.texts, posts.topics, strict=True)
        }
        log.info("loaded %d posts, %d users, %d feed events", len(posts), len(known), len(history))
        exposure_log = ExposureLog(
            engine,
            settings.spool_dir,
            max_queue=settings.exposure_queue_size,
            batch_size=settings.exposure_batch_size,
            flush_interval=settings.exposure_flush_interval,
            retry_interval=settings.db_retry_interval,
        )
        metrics = GatewayMetrics()
        metrics.watch_exposures(exposure_log)
        return cls(
            settings=settings,
            engine=engine,
            history=history,
            posts=posts,
            post_json=post_json,
            known_users=known,
            popular=InprocessBackend("popular", load_model("popular", None, history, posts)),
            exposure_log=exposure_log,
            metrics=metrics,
            follower=follower,
        )

    def is_known(self, user_id: int) -> bool:
        """A user with a profile or any feed event; others get cold-start recommendations."""
        return user_id in self.known_users or self.history.users.get(user_id) >= 0
