"""Point-in-time ranking features for (user, candidate posts, at), shared by both arms.

Everything is computed from a `History` strictly before `at` plus static post/user metadata
indexed once into arrays, so one code path serves training (many cutoffs) and requests (one
`at` each) without pandas. A feature block is a small object that names the columns it can
make and makes them for a `Request`; `FeatureBuilder.matrix` runs only the blocks that make a
column the model asks for, and fills the matrix in the model's column order.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from feedlab.models.catalog import PostCatalog, UserProfiles
from feedlab.models.history import History, to_us

DAY_US = 86_400 * 1_000_000
WINDOWS = {f"{d}d": timedelta(days=d) for d in (1, 3, 7, 14, 30)}
RECENT_LIKES = 50  # a user's taste is read from their latest likes
DECAY_HALF_LIFE_DAYS = 3.0  # the decayed popularity the prior may pick
DECAY_HALF_LIVES = (1, 3, 7, 14, 30)  # days; decayed popularity columns, likes read over 30 days
DECAYED_SHARES = tuple(f"post_like_share_decay{h}d" for h in DECAY_HALF_LIVES)


class TextSVD:
    """TF-IDF → truncated SVD of post texts: dense, L2-normalised text vectors."""

    def __init__(self, dim: int = 32, seed: int = 0) -> None:
        self.dim = dim
        self.seed = seed
        self._tfidf: Any = None
        self._svd: Any = None

    def fit(self, texts: Sequence[str]) -> TextSVD:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        self._tfidf = TfidfVectorizer(min_df=2, max_features=50_000, sublinear_tf=True)
        matrix = self._tfidf.fit_transform(texts)
        dim = max(1, min(self.dim, matrix.shape[1] - 1, matrix.shape[0] - 1))
        self._svd = TruncatedSVD(dim, random_state=self.seed).fit(matrix)
        return self

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        if self._tfidf is None or self._svd is None:
            raise RuntimeError("TextSVD: fit it before transform")
        vectors = self._svd.transform(self._tfidf.transform(texts)).astype(np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms > 0, norms, 1)

    def save(self, path: Path) -> None:
        path.write_bytes(pickle.dumps(self))

    @staticmethod
    def load(path: Path) -> TextSVD:
        """Only for artifacts this project wrote (pickle)."""
        return pickle.loads(path.read_bytes())


@dataclass
class PostTable:
    """Static post attributes by catalog position."""

    catalog: PostCatalog
    topic_vocab: list[str]
    topic: np.ndarray  # int32 code, -1 unknown
    text_vectors: np.ndarray  # (n, d) float32, unit length (0 for empty texts)
    text_len: np.ndarray  # words

    @classmethod
    def build(
        cls, catalog: PostCatalog, text_model: TextSVD, topic_vocab: Sequence[str] | None = None
    ) -> PostTable:
        vocab = (
            sorted({t for t in catalog.topics if t}) if topic_vocab is None else list(topic_vocab)
        )
        codes = {t: i for i, t in enumerate(vocab)}
        topic = np.array([codes.get(t, -1) if t else -1 for t in catalog.topics], np.int32)
        return cls(
            catalog=catalog,
            topic_vocab=vocab,
            topic=topic,
            text_vectors=text_model.transform(catalog.texts),
            text_len=np.array([len(t.split()) for t in catalog.texts], np.float32),
        )

    def __len__(self) -> int:
        return len(self.catalog)


@dataclass
class PostStats:
    """View/like counts by catalog position before `at`, overall and per recent window, with
    each post's share of the window's likes: activity levels drift over time, shares do not.

    A snapshot shared by every request that sees the same events, so what derives from it
    alone (the post feature columns, the popularity orders) is computed once per snapshot."""

    views: dict[str, np.ndarray]
    likes: dict[str, np.ndarray]
    like_share: dict[str, np.ndarray]
    source: tuple[History, np.ndarray, datetime] | None = None  # (history, positions, at)

    @cached_property
    def columns(self) -> tuple[list[str], np.ndarray]:
        """Catalog-wide post statistic features: (names, n_posts × n_names float32)."""
        v, lk = self.views, self.likes
        out = {}
        for name in ("all", *WINDOWS):
            out[f"post_views_{name}"] = v[name]
            out[f"post_likes_{name}"] = lk[name]
            out[f"post_like_share_{name}"] = self.like_share[name]
        out["post_like_rate_all"] = _rate(lk["all"], v["all"])
        out["post_like_rate_30d"] = _rate(lk["30d"], v["30d"])
        out["post_recent_share"] = lk["30d"] / (lk["all"] + 1)
        out["post_trend_7d_30d"] = lk["7d"] / (lk["30d"] + 1)
        return list(out), np.column_stack(list(out.values())).astype(np.float32)

    @cached_property
    def decayed_shares(self) -> dict[int, np.ndarray]:
        """Each post's share of the likes of the last 30 days, a like weighing
        2^(-age / h days), for each half-life h of `DECAY_HALF_LIVES`: recent popularity
        without a window's hard edge, at several speeds. Made only when a model asks for it.
        The 30-day window start is in the snapshot key, so two reads sharing a snapshot see the
        same likes, and their weights differ by one factor, which the share cancels."""
        if self.source is None:
            raise ValueError("stats: built without a history, no decayed popularity")
        history, positions, at = self.source
        ts, liked = history.likes_between(at - WINDOWS["30d"], at)
        age_days = (to_us(at) - ts) / DAY_US
        aligned = np.where(positions >= 0, positions, len(history.posts))
        out = {}
        for half_life in DECAY_HALF_LIVES:
            by_history = np.bincount(
                liked, weights=np.exp2(-age_days / half_life), minlength=len(history.posts) + 1
            )
            decayed = by_history[aligned]
            total = float(decayed.sum())
            out[half_life] = (decayed / total if total > 0 else decayed).astype(np.float32)
        return out

    @property
    def decayed_share(self) -> np.ndarray:
        """The decayed share at `DECAY_HALF_LIFE_DAYS`."""
        return self.decayed_shares[int(DECAY_HALF_LIFE_DAYS)]

    @cached_property
    def popularity_orders(self) -> dict[str, np.ndarray]:
        """Catalog positions by popularity, best first (ties by position): "all_time" ranks
        likes with views as tie-break; "recent" ranks 30-day likes with all-time as tie-break.
        Candidate generation walks these instead of sorting the catalog per request."""
        views, likes = self.views["all"], self.likes["all"]
        all_time = likes + views / (views.max(initial=0) + 1)
        recent = self.likes["30d"] + all_time / (all_time.max(initial=0) + 1)
        return {
            "all_time": np.argsort(-all_time, kind="stable"),
            "recent": np.argsort(-recent, kind="stable"),
        }

    @classmethod
    def at(cls, history: History, positions: np.ndarray, at: datetime) -> PostStats:
        """`positions`: history position of each catalog post (-1 when it has no events)."""
        times = [at, *(at - width for width in WINDOWS.values())]
        cumulative = np.stack([history.cumulative_counts(t) for t in times])  # (T, 2, n_hist)
        padded = np.concatenate([cumulative, np.zeros((*cumulative.shape[:2], 1))], axis=2)
        aligned = padded[:, :, np.where(positions >= 0, positions, padded.shape[2] - 1)]
        aligned = aligned.astype(np.float32)
        now = aligned[0]
        views, likes = {"all": now[0]}, {"all": now[1]}
        for i, name in enumerate(WINDOWS, start=1):
            views[name], likes[name] = now[0] - aligned[i, 0], now[1] - aligned[i, 1]
        share = {name: c / max(float(c.sum()), 1.0) for name, c in likes.items()}
        return cls(views, likes, share, (history, positions, at))


@dataclass
class UserState:
    """One user's events before `at`, with posts as catalog positions (-1: not in catalog)."""

    user_id: int
    at_us: int
    ts: np.ndarray
    positions: np.ndarray
    is_like: np.ndarray

    @property
    def liked(self) -> np.ndarray:
        """Catalog positions liked, in time order (unknown posts dropped)."""
        p = self.positions[self.is_like]
        return p[p >= 0]

    @property
    def recent_liked(self) -> np.ndarray:
        return self.liked[-RECENT_LIKES:]

    def seen_mask(self, n_posts: int) -> np.ndarray:
        mask = np.zeros(n_posts, bool)
        p = self.positions
        mask[p[p >= 0]] = True
        return mask


@dataclass
class Request:
    """Everything known for one scoring call; feature blocks read from it."""

    at: datetime
    user: UserState
    stats: PostStats
    candidates: np.ndarray  # catalog positions
    posts: PostTable
    profile: tuple[dict[str, float], dict[str, str]]


Columns = Mapping[str, np.ndarray | float]
"""Columns by name: an array with one value per candidate, or one float for all of them."""


class FeatureBlock(Protocol):
    """Makes the columns `names` for a request (all of them: a block is small and coherent)."""

    @property
    def names(self) -> tuple[str, ...]: ...

    def __call__(self, req: Request) -> Columns: ...


@dataclass(frozen=True)
class Block:
    """A feature block from a plain function and the column names it returns."""

    names: tuple[str, ...]
    make: Callable[[Request], Columns]

    def __call__(self, req: Request) -> Columns:
        return self.make(req)


def _rate(num: np.ndarray | float, den: np.ndarray | float, prior: float = 0.5, weight: float = 2):
    """Like-rate shrunk towards `prior` so that 1 like out of 1 view is not 100%."""
    return (np.asarray(num) + prior * weight) / (np.asarray(den) + weight)


def post_columns(req: Request) -> dict[str, np.ndarray]:
    c = req.candidates
    names, table = req.stats.columns
    rows = table[c]
    out = {name: rows[:, j] for j, name in enumerate(names)}
    out["post_topic"] = req.posts.topic[c].astype(np.float32)
    out["post_text_len"] = req.posts.text_len[c]
    return out


def decayed_columns(req: Request) -> dict[str, np.ndarray]:
    """The decayed shares, and the z-score within the request's candidates of the log of the
    3-day one and of the 30-day like share (how a post's popularity compares with the other
    candidates of this user, whatever the overall activity)."""
    c = req.candidates
    out = {
        name: req.stats.decayed_shares[h][c]
        for name, h in zip(DECAYED_SHARES, DECAY_HALF_LIVES, strict=True)
    }
    out["post_like_share_decay3d_z"] = zscore(np.log(out["post_like_share_decay3d"] + 1e-5))
    out["post_like_share_30d_z"] = zscore(np.log(req.stats.like_share["30d"][c] + 1e-5))
    return out


def user_columns(req: Request) -> dict[str, float]:
    u = req.user
    n_likes = float(u.is_like.sum())
    n_views = float(len(u.is_like) - n_likes)
    week = u.ts >= u.at_us - 7 * DAY_US
    values = {
        "user_views": n_views,
        "user_likes": n_likes,
        "user_like_rate": float(_rate(n_likes, n_views)),
        "user_events_7d": float(week.sum()),
        "user_days_active": (u.at_us - u.ts[0]) / DAY_US if len(u.ts) else -1.0,
        "user_days_since_last": (u.at_us - u.ts[-1]) / DAY_US if len(u.ts) else -1.0,
    }
    return values


def zscore(x: np.ndarray) -> np.ndarray:
    """`x` standardised within one request's candidates (zeros when constant): scores whose
    level drifts with a user's history length compare across users and time this way."""
    if len(x) < 2:
        return np.zeros(len(x), np.float32)
    sd = float(x.std())
    return ((x - x.mean()) / sd if sd > 0 else np.zeros(len(x))).astype(np.float32)


def rank_share(x: np.ndarray) -> np.ndarray:
    """0 for the highest value, 1 for the lowest (share of candidates ranked above)."""
    n = len(x)
    out = np.empty(n, np.float32)
    out[np.argsort(-x, kind="stable")] = np.arange(n) / max(1, n - 1)
    return out


def topic_columns(req: Request) -> dict[str, np.ndarray]:
    """User × topic affinity: likes, share of likes and like-rate in the candidate's topic."""
    posts, c, u = req.posts, req.candidates, req.user
    n_topics = len(posts.topic_vocab) + 1  # last slot: unknown topic
    liked_topics = np.bincount(posts.topic[u.liked], minlength=n_topics)
    seen = u.positions[u.positions >= 0]
    seen_topics = np.bincount(posts.topic[seen], minlength=n_topics)
    cand_topic = posts.topic[c]
    topic_likes = liked_topics[cand_topic].astype(np.float32)
    return {
        "user_topic_likes": topic_likes,
        "user_topic_share": topic_likes / max(1, len(u.liked)),
        "user_topic_like_rate": _rate(topic_likes, seen_topics[cand_topic], weight=5).astype(
            np.float32
        ),
    }


def text_columns(req: Request) -> dict[str, np.ndarray]:
    """TF-IDF/SVD text similarity of each candidate to the mean of the user's recent likes."""
    posts, c, recent = req.posts, req.candidates, req.user.recent_liked
    if len(recent) and posts.text_vectors.shape[1]:
        taste = posts.text_vectors[recent].mean(axis=0)
        taste /= max(float(np.linalg.norm(taste)), 1e-9)
        return {"user_text_sim": posts.text_vectors[c] @ taste}
    return {"user_text_sim": np.zeros(len(c), np.float32)}


def context_columns(req: Request) -> dict[str, float]:
    return {"hour": req.at.hour + req.at.minute / 60, "weekday": float(req.at.weekday())}


STAT_NAMES = (
    *(f"post_{kind}_{n}" for n in ("all", *WINDOWS) for kind in ("views", "likes", "like_share")),
    *("post_like_rate_all", "post_like_rate_30d", "post_recent_share", "post_trend_7d_30d"),
)
DECAYED_NAMES = (*DECAYED_SHARES, "post_like_share_decay3d_z", "post_like_share_30d_z")
USER_NAMES = (
    "user_views",
    "user_likes",
    "user_like_rate",
    "user_events_7d",
    "user_days_active",
    "user_days_since_last",
)
SHARED_BLOCKS: tuple[FeatureBlock, ...] = (
    Block((*STAT_NAMES, "post_topic", "post_text_len"), post_columns),
    Block(DECAYED_NAMES, decayed_columns),
    Block(USER_NAMES, user_columns),
    Block(("user_topic_likes", "user_topic_share", "user_topic_like_rate"), topic_columns),
    Block(("user_text_sim",), text_columns),
    Block(("hour", "weekday"), context_columns),
)
"""The classic blocks every arm can draw on (the profile block comes with the fitted
`ProfileEncoder`)."""


@dataclass
class ProfileEncoder:
    """User profile columns as numbers: numeric as is, categoricals as codes fixed at training
    (unseen values → -1), so CatBoost can take a plain float matrix."""

    numeric: list[str]
    categorical: dict[str, list[str]]

    @classmethod
    def fit(cls, profiles: UserProfiles, max_levels: int = 200) -> ProfileEncoder:
        cats = {}
        for k, values in profiles.categorical.items():
            levels, counts = np.unique(values.astype(str), return_counts=True)
            cats[k] = levels[np.argsort(-counts, kind="stable")][:max_levels].tolist()
        return cls(sorted(profiles.numeric), cats)

    @property
    def block(self) -> Block:
        names = [f"profile_{k}" for k in self.numeric] + [f"profile_{k}" for k in self.categorical]
        return Block(tuple(names), self.columns)

    def columns(self, req: Request) -> dict[str, float]:
        numeric, categorical = req.profile
        out = {f"profile_{k}": float(numeric.get(k, np.nan)) for k in self.numeric}
        for k, levels in self.categorical.items():
            value = categorical.get(k, "")
            out[f"profile_{k}"] = float(levels.index(value) if value in levels else -1)
        return out


class FeatureBuilder:
    """The point-in-time context of a request (user state, post statistics, profile) from a
    History and static tables, and the feature matrix of the columns a model asks for."""

    def __init__(
        self,
        history: History,
        posts: PostTable,
        profiles: UserProfiles | None = None,
        encoder: ProfileEncoder | None = None,
        extra_blocks: Sequence[FeatureBlock] = (),
    ) -> None:
        self.history = history
        self.posts = posts
        self.profiles = profiles or UserProfiles.empty()
        self.encoder = encoder or ProfileEncoder.fit(self.profiles)
        self.blocks: list[FeatureBlock] = [*SHARED_BLOCKS, self.encoder.block, *extra_blocks]
        self._maker = {name: block for block in self.blocks for name in block.names}
        self._positions: np.ndarray | None = None
        self._positions_known = -1
        self._stats_cache: tuple[tuple, PostStats] | None = None

    def check(self, columns: Sequence[str]) -> None:
        """Raise when no block makes one of `columns` (at fit and load, not per request)."""
        missing = [c for c in columns if c not in self._maker]
        if missing:
            raise ValueError(f"columns: no feature block makes {missing}")

    def history_positions(self) -> np.ndarray:
        """History position of each catalog post, refreshed when new posts enter the history."""
        if self._positions is None or self._positions_known != len(self.history.posts):
            self._positions_known = len(self.history.posts)
            self._positions = self.history.posts.lookup(self.posts.catalog.post_ids)
        return self._positions

    def stats(self, at: datetime) -> PostStats:
        """Post stats as of the start of `at`'s second, cached while the events before it
        (and before each window start) stay the same. Reading at whole seconds lets every
        request of a second share one snapshot while likes stream in; it stays point-in-time
        (nothing at or after `at`), at most a second stale."""
        at = at.replace(microsecond=0)
        key = self.history.version_at([at, *(at - width for width in WINDOWS.values())])
        key = (key, len(self.history.posts))
        if self._stats_cache is None or self._stats_cache[0] != key:
            self._stats_cache = (key, PostStats.at(self.history, self.history_positions(), at))
        return self._stats_cache[1]

    def user_state(self, user_id: int, at: datetime) -> UserState:
        ts, post_ids, is_like = self.history.user_events_before(user_id, at)
        return UserState(user_id, to_us(at), ts, self.posts.catalog.index.lookup(post_ids), is_like)

    def request(self, user_id: int, at: datetime, candidates: np.ndarray | None = None) -> Request:
        """The context of (user, at) with `candidates` (catalog positions; none by default)."""
        return Request(
            at=at,
            user=self.user_state(user_id, at),
            stats=self.stats(at),
            candidates=np.empty(0, np.int64) if candidates is None else candidates,
            posts=self.posts,
            profile=self.profiles.row(user_id),
        )

    def matrix(self, req: Request, columns: Sequence[str]) -> np.ndarray:
        """n_candidates × len(columns) float32, in the order of `columns`; only the blocks that
        make one of them run."""
        blocks = {id(self._maker[c]): self._maker[c] for c in columns}
        made: dict[str, np.ndarray | float] = {}
        for block in blocks.values():
            made.update(block(req))
        matrix = np.empty((len(req.candidates), len(columns)), np.float32)
        for j, name in enumerate(columns):
            matrix[:, j] = made[name]
        return matrix
