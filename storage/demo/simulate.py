"""Traffic simulator: users of a world ask the gateway for their feed and react to it.

Simulated time starts at the first midnight after the world's last stored event and advances
through `days` days. Every simulated user opens the feed `requests_per_day` times a day at
random moments; requests are replayed in time order over HTTP (`time` = the simulated moment),
each served post is viewed a few seconds later, and liked a few minutes later (well inside the
1 h attribution window) when the world's hidden preference model says so. A `Judge` decides the
likes: the demo world's preference model, or MovieLens replay (a served movie is liked when the
user really rated it 4 or 5 in the held-out period).

The simulator only talks to a gateway on the loopback interface: it is a load source, and a
mistyped URL must not send synthetic traffic to a real deployment.
"""

from __future__ import annotations

import gzip
import ipaddress
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from feedlab.storage.schema import feed, users
from sqlalchemy import Engine, func, select
from tqdm import tqdm

LIKE_DELAY_MIN = (1.0, 10.0)
"""A like lands 1-10 minutes after its exposure: inside the default 1 h attribution window."""
VIEW_DELAY_S = 5.0
RETRIES = 3


class GatewayUnreachable(RuntimeError):
    """The gateway stopped answering (connection refused or timed out, even after retries)."""


class Judge(Protocol):
    """Decides which served posts a user likes at a moment (the world's hidden truth)."""

    def likes(
        self, user_id: int, post_ids: Sequence[int], at: datetime, rng: random.Random
    ) -> list[bool]: ...


@dataclass
class ArmTally:
    requests: int = 0
    served: int = 0
    likes: int = 0
    hits: int = 0


@dataclass
class SimulationSummary:
    """What the simulator saw, per `exp_group` (its own count; the analysis reads the DB)."""

    start: datetime
    end: datetime
    users: int
    requests: int = 0
    errors: int = 0
    arms: dict[str, ArmTally] = field(default_factory=dict)

    def table(self) -> str:
        lines = [
            f"simulated {self.requests} requests of {self.users} users, "
            f"{self.start:%Y-%m-%d %H:%M} .. {self.end:%Y-%m-%d %H:%M} ({self.errors} errors)",
            f"{'exp_group':<12}{'requests':>10}{'served':>9}{'likes':>8}{'hit rate':>10}",
        ]
        for name, arm in sorted(self.arms.items()):
            rate = arm.hits / arm.requests if arm.requests else 0.0
            lines.append(f"{name:<12}{arm.requests:>10}{arm.served:>9}{arm.likes:>8}{rate:>10.3f}")
        return "\n".join(lines)


def require_loopback(url: str) -> str:
    """The URL without a trailing slash, or ValueError when its host is not loopback."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError(f"--url: expected http://127.0.0.1:PORT, got {url!r}")
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if not loopback:
        raise ValueError(
            f"--url: {host!r} is not a loopback address; the simulator only drives a local gateway"
        )
    return url.rstrip("/")


def history_end(engine: Engine) -> datetime | None:
    """The timestamp of the newest stored feed event (None for an empty feed)."""
    with engine.connect() as conn:
        return conn.execute(select(func.max(feed.c.timestamp))).scalar_one()


def world_user_ids(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return sorted(int(u) for u in conn.execute(select(users.c.user_id)).scalars())


def next_midnight(at: datetime) -> datetime:
    return datetime(at.year, at.month, at.day) + timedelta(days=1)


def schedule(
    user_ids: Sequence[int], start: datetime, days: int, per_day: int, rng: random.Random
) -> list[tuple[datetime, int]]:
    """(moment, user) for every request, in time order; moments are whole seconds."""
    plan = []
    for day in range(days):
        base = start + timedelta(days=day)
        for user_id in user_ids:
            for _ in range(per_day):
                plan.append((base + timedelta(seconds=rng.randrange(86_400)), user_id))
    plan.sort()
    return plan


def simulate(
    url: str,
    user_ids: Sequence[int],
    judge: Judge,
    *,
    start: datetime,
    days: int,
    requests_per_day: int = 3,
    limit: int = 5,
    seed: int = 0,
    progress: bool = True,
) -> SimulationSummary:
    """Replay `days` simulated days of feed requests, views and likes against the gateway."""
    base = require_loopback(url)
    rng = random.Random(seed)
    plan = schedule(user_ids, start, days, requests_per_day, rng)
    summary = SimulationSummary(start=start, end=start + timedelta(days=days), users=len(user_ids))
    with httpx.Client(base_url=base, timeout=30.0) as http:
        for at, user_id in tqdm(plan, desc="simulating", unit=" req", disable=not progress):
            body = _request(
                http,
                "GET",
                "/post/recommendations/",
                params={"id": user_id, "time": at.isoformat(), "limit": limit},
            )
            summary.requests += 1
            if body is None:
                summary.errors += 1
                continue
            group = str(body["exp_group"])
            arm = summary.arms.setdefault(group, ArmTally())
            arm.requests += 1
            post_ids = [int(item["id"]) for item in body["recommendations"]]
            arm.served += len(post_ids)
            liked = judge.likes(user_id, post_ids, at, rng) if post_ids else []
            events = _events(user_id, post_ids, liked, at, rng)
            arm.likes += sum(liked)
            arm.hits += any(liked)
            if events and _request(http, "POST", "/feed", json=events) is None:
                summary.errors += 1
    return summary


def _events(
    user_id: int, post_ids: Sequence[int], liked: Sequence[bool], at: datetime, rng: random.Random
) -> list[dict]:
    events = []
    for position, (post_id, like) in enumerate(zip(post_ids, liked, strict=True)):
        seen = at + timedelta(seconds=1 + position * VIEW_DELAY_S)
        events.append(_event(seen, user_id, post_id, "view"))
        if like:
            delay = timedelta(minutes=rng.uniform(*LIKE_DELAY_MIN))
            events.append(_event(at + delay, user_id, post_id, "like"))
    return events


def _event(at: datetime, user_id: int, post_id: int, action: str) -> dict:
    return {
        "event_id": f"sim-{uuid.uuid4().hex}",
        "timestamp": at.isoformat(),
        "user_id": user_id,
        "post_id": post_id,
        "action": action,
    }


def _request(http: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    """JSON body of a 2xx answer; transport errors and 5xx are retried (POST /feed is
    idempotent by event id), anything else counts as an error (None). A gateway that cannot
    be reached at all ends the simulation (GatewayUnreachable) instead of failing every request."""
    for attempt in range(RETRIES):
        try:
            resp = http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            if attempt == RETRIES - 1:
                raise GatewayUnreachable(f"{method} {http.base_url}{path}: {exc!r}") from exc
            time.sleep(0.2 * (attempt + 1))
            continue
        if resp.status_code >= 500:
            time.sleep(0.2 * (attempt + 1))
            continue
        if resp.is_success:
            return resp.json() if resp.content else {}
        return None
    return None


@dataclass
class ProbabilityJudge:
    """Likes drawn from a probability function p(user, posts, at) -> list of probabilities."""

    probability: Callable[[int, Sequence[int], datetime], Sequence[float]]

    def likes(
        self, user_id: int, post_ids: Sequence[int], at: datetime, rng: random.Random
    ) -> list[bool]:
        return [rng.random() < p for p in self.probability(user_id, post_ids, at)]


@dataclass
class ReplayJudge:
    """MovieLens replay: liked = the user really rated the movie 4 or 5 in the held-out period."""

    liked: dict[int, set[int]]

    def likes(
        self, user_id: int, post_ids: Sequence[int], at: datetime, rng: random.Random
    ) -> list[bool]:
        truth = self.liked.get(user_id, set())
        return [p in truth for p in post_ids]


def movielens_holdout(
    ratings: Sequence[tuple[int, int, int, datetime]], holdout_start: datetime
) -> dict[int, set[int]]:
    """user -> movies rated 4 or 5 at or after `holdout_start` (rows: user, item, rating, ts)."""
    liked: dict[int, set[int]] = {}
    for user_id, item_id, rating, ts in ratings:
        if ts >= holdout_start and rating >= 4:
            liked.setdefault(user_id, set()).add(item_id)
    return liked


@dataclass
class WorldPlan:
    """Who is simulated, from when, and who decides their likes."""

    user_ids: list[int]
    start: datetime
    judge: Judge


def sample_users(user_ids: Sequence[int], n: int, seed: int) -> list[int]:
    """`n` of the users (all of them when there are fewer), the same for the same seed."""
    if n >= len(user_ids):
        return list(user_ids)
    return sorted(random.Random(seed).sample(list(user_ids), n))


def demo_judge(spec_path: Path) -> ProbabilityJudge:
    """Likes drawn from the demo world's hidden preference model, rebuilt from its spec."""
    import numpy as np
    from feedlab.storage.demo.world import WorldSpec

    model = WorldSpec.load(spec_path).preference_model()

    def probability(user_id: int, post_ids: Sequence[int], at: datetime) -> Sequence[float]:
        users = np.full(len(post_ids), user_id, dtype=np.int64)
        return model.like_probability(users, np.asarray(post_ids), at).tolist()

    return ProbabilityJudge(probability)


def demo_plan(engine: Engine, spec_path: Path, *, start: datetime | None = None) -> WorldPlan:
    """The demo world stored in `engine` (built from the spec at `spec_path` by
    `feedlab demo-data`), judged by its hidden preference model."""
    spec_path = Path(spec_path)
    if not spec_path.is_file():
        raise FileNotFoundError(
            f"--world: {spec_path} not found; `feedlab demo-data --spec-out` writes it"
        )
    end = history_end(engine)
    if end is None:
        raise ValueError("the database has no feed events: run `feedlab demo-data` first")
    return WorldPlan(world_user_ids(engine), start or next_midnight(end), demo_judge(spec_path))


def read_movielens_ratings(folder: Path) -> list[tuple[int, int, int, datetime]]:
    """(user, item, rating, ts) rows of MovieLens 100K's u.data(.gz)."""
    path = folder / "u.data.gz"
    opener = gzip.open if path.exists() else open
    path = path if path.exists() else folder / "u.data"
    rows = []
    with opener(path, "rt") as fh:
        for line_no, line in enumerate(fh, 1):
            parts = line.split()
            if len(parts) != 4:
                raise ValueError(f"{path}: line {line_no}: expected 4 fields, got {len(parts)}")
            user, item, rating, ts = map(int, parts)
            rows.append((user, item, rating, datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)))
    return rows


def movielens_plan(
    folder: Path, engine: Engine, *, start: datetime | None = None, days: int
) -> WorldPlan:
    """MovieLens replay from `start` (default: the median rating time) for `days` days: the
    users are those with a real like (rating 4-5) in that period and a profile in the database."""
    ratings = read_movielens_ratings(Path(folder))
    if start is None:
        stamps = sorted(r[3] for r in ratings)
        start = stamps[len(stamps) // 2]
    end = start + timedelta(days=days)
    liked = movielens_holdout([r for r in ratings if r[3] < end], start)
    known = set(world_user_ids(engine))
    ids = sorted(u for u in liked if u in known)
    if not ids:
        raise ValueError("no MovieLens user in the database has a like in the replayed period")
    return WorldPlan(ids, start, ReplayJudge(liked))
