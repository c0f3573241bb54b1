"""The test arm at serving time: candidates (shared sources + embedding retrieval) →
point-in-time classic features + embedding features → CatBoost scores."""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from feedlab.models.base import Event
from feedlab.models.candidates import (
    CandidateConfig,
    CoVisitation,
    DailyCoVisitation,
    top_positions,
)
from feedlab.models.candidates import scoring_request as shared_request
from feedlab.models.catalog import PostCatalog
from feedlab.models.features import FeatureBuilder, PostTable, Request, TextSVD, UserState
from feedlab.models.test.embeddings import Embedder, EmbeddingCache, embed_texts
from feedlab.models.test.scoring import PriorScorer
from feedlab.models.test.taste import EmbeddingFeatures


@dataclass
class RetrievalConfig:
    """How many candidates each source brings (shared sources, then embedding similarity)."""

    shared: CandidateConfig = field(default_factory=CandidateConfig)
    embedding: int = 100


def scoring_request(
    builder: FeatureBuilder,
    covisit: CoVisitation,
    embedding: EmbeddingFeatures,
    config: RetrievalConfig,
    user_id: int,
    at: datetime,
    exclude_seen: bool,
    exclude: Collection[int] | None = None,
) -> Request:
    """The shared candidates plus the posts nearest to the user's taste."""

    def nearest(user: UserState, excluded: np.ndarray) -> np.ndarray | None:
        taste = embedding.taste(user)
        if not (taste.n_likes and config.embedding):
            return None
        return top_positions(embedding.similarity(user), config.embedding, ~excluded)

    return shared_request(
        builder, covisit, config.shared, user_id, at, exclude_seen, exclude, more=nearest
    )


@dataclass(frozen=True)
class ServingState:
    """Everything indexed by catalog position; replaced as a whole when posts arrive, so a
    concurrent request sees either the old catalog or the new one, never a mix."""

    builder: FeatureBuilder
    covisit: DailyCoVisitation
    embedding: EmbeddingFeatures

    @property
    def catalog(self) -> PostCatalog:
        return self.builder.posts.catalog


class TestRecommender:
    """CatBoost over the shared classic features plus embedding features; one instance serves
    many threads. New posts are embedded on arrival (`add_posts`)."""

    name = "test"

    def __init__(
        self,
        state: ServingState,
        scorer: PriorScorer,
        config: RetrievalConfig,
        version: str,
        embedder: Embedder,
        cache: EmbeddingCache,
        text_model: TextSVD,
    ) -> None:
        self.state = state
        self.history = state.builder.history
        self.scorer = scorer
        self._positions: tuple[tuple[str, ...], list[int]] | None = None
        self.config = config
        self.version = version
        self.embedder = embedder
        self.cache = cache
        self.text_model = text_model
        self._lock = threading.Lock()

    @property
    def catalog(self) -> PostCatalog:
        return self.state.catalog

    def recommend(
        self, user_id: int, at: datetime, limit: int, exclude: Collection[int] | None = None
    ) -> list[int]:
        state = self.state
        req = scoring_request(
            state.builder,
            state.covisit.at(at),
            state.embedding,
            self.config,
            user_id,
            at,
            False,
            exclude,
        )
        if len(req.candidates) == 0:
            return []
        matrix, names = state.builder.matrix(req)
        scores = self.scorer.score(matrix[:, self._trained_positions(names)])
        order = np.argsort(-scores, kind="stable")[:limit]
        return state.catalog.post_ids[req.candidates[order]].tolist()

    def _trained_positions(self, names: list[str]) -> list[int]:
        """Where the trained columns sit among the built ones (cached per column list)."""
        key = tuple(names)
        cached = self._positions
        if cached is None or cached[0] != key:
            missing = [c for c in self.scorer.columns if c not in names]
            if missing:
                raise RuntimeError(f"test: the feature builder lacks trained columns {missing}")
            cached = (key, [names.index(c) for c in self.scorer.columns])
            self._positions = cached
        return cached[1]

    def observe(self, events: list[Event]) -> None:
        """Nothing to do: the taste is read from the shared History on each request."""

    def post_vector(self, post_id: int) -> np.ndarray:
        """The embedding this model uses for a post (KeyError when unknown)."""
        state = self.state
        pos = state.catalog.index.get(post_id)
        if pos < 0:
            raise KeyError(f"post_id: {post_id} is not in the test arm's catalog")
        return state.embedding.vectors[pos]

    def add_posts(
        self,
        post_ids: Sequence[int],
        texts: Sequence[str],
        topics: Sequence[str | None] | None = None,
    ) -> int:
        """Embed posts that arrived after loading and make them recommendable; posts already
        known keep their vectors. Returns how many posts were added."""
        topics = list(topics) if topics is not None else [None] * len(post_ids)
        if not len(post_ids) == len(texts) == len(topics):
            raise ValueError("posts: post_ids, texts and topics must have the same length")
        with self._lock:
            old = self.state
            fresh: dict[int, tuple[str, str | None]] = {}
            for p, t, s in zip(post_ids, texts, topics, strict=True):
                if old.catalog.index.get(int(p)) < 0:
                    fresh[int(p)] = (t or "", s)
            if not fresh:
                return 0
            new_texts = [t for t, _ in fresh.values()]
            vectors, _, _ = embed_texts(self.embedder, new_texts, self.cache)
            self.state = grown_state(
                old, list(fresh), new_texts, [s for _, s in fresh.values()], vectors,
                self.text_model,
            )  # fmt: skip
            return len(fresh)


def grown_state(
    old: ServingState,
    post_ids: list[int],
    texts: list[str],
    topics: list[str | None],
    vectors: np.ndarray,
    text_model: TextSVD,
) -> ServingState:
    """`old` with posts appended at the end of the catalog (existing positions unchanged)."""
    table = old.builder.posts
    catalog = PostCatalog(
        np.concatenate([table.catalog.post_ids, np.asarray(post_ids, np.int64)]),
        [*table.catalog.texts, *texts],
        [*table.catalog.topics, *topics],
    )
    added = PostTable.build(
        PostCatalog.from_records(post_ids, texts, topics), text_model, table.topic_vocab
    )
    grown = PostTable(
        catalog=catalog,
        topic_vocab=table.topic_vocab,
        topic=np.concatenate([table.topic, added.topic]),
        text_vectors=np.vstack([table.text_vectors, added.text_vectors]),
        text_len=np.concatenate([table.text_len, added.text_len]),
    )
    embedding = EmbeddingFeatures(
        np.vstack([old.embedding.vectors, vectors]).astype(np.float32), old.embedding.config
    )
    builder = FeatureBuilder(
        old.builder.history,
        grown,
        old.builder.profiles,
        old.builder.encoder,
        extra_blocks=[embedding],
    )
    covisit = DailyCoVisitation(old.covisit.history, catalog.post_ids, old.covisit.neighbours)
    return ServingState(builder, covisit, embedding)
