"""Test-arm benchmark: embedding throughput, `recommend()` latency on a 7,000-post catalog and
process memory with the sentence-transformers model loaded.

Builds a demo world in memory (7,000 posts with generated texts by default, or real BBC texts
with --posts-csv), embeds every post with a cold cache (throughput), trains a small test-arm
artifact, loads it through `models.registry.load_model` and times `recommend()` in process at
a fresh `at` per call (so per-request work is not cached away). Budget: p50 ≤ 5 ms,
p99 ≤ 20 ms.

    .venv/bin/python benchmarks/test_arm.py
    .venv/bin/python benchmarks/test_arm.py --posts 7000 --requests 2000 --embedding-model PATH
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from feedlab.models.catalog import PostCatalog  # noqa: E402
from feedlab.models.history import History, from_us  # noqa: E402
from feedlab.models.registry import load_model  # noqa: E402
from feedlab.models.threads import one_blas_thread  # noqa: E402

if TYPE_CHECKING:
    from feedlab.storage.demo.world import WorldSpec


def rss_mb() -> float:
    """Resident set size of this process (Linux /proc), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def world_spec(args: argparse.Namespace) -> WorldSpec:
    """The demo world of the flags --seed, --users, --posts, --days, --posts-csv and (where the
    script has it) --recommender-share."""
    from feedlab.storage.demo.world import WorldSpec

    share = getattr(args, "recommender_share", None)
    return WorldSpec(
        seed=args.seed,
        n_users=args.users,
        n_posts=args.posts,
        days=args.days,
        posts_csv=str(args.posts_csv) if args.posts_csv else None,
        **({} if share is None else {"recommender_share": share}),
    )


def build_world(args: argparse.Namespace) -> tuple[History, PostCatalog]:
    from feedlab.storage.demo.world import World

    world = World.build(world_spec(args))
    feed = world.feed
    history = History.from_arrays(
        feed["timestamp"].to_numpy(),
        feed["user_id"].to_numpy(),
        feed["post_id"].to_numpy(),
        feed["action"].to_numpy(),
    )
    posts = PostCatalog.from_records(
        world.posts["post_id"].tolist(), world.posts["text"].tolist(), world.posts["topic"].tolist()
    )
    return history, posts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=7000)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--days", type=int, default=21)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--posts-csv", type=Path, default=None)
    parser.add_argument("--embedding-model", default=None)
    args = parser.parse_args()

    from feedlab.models import test
    from feedlab.models.ranker import TrainingSet
    from feedlab.models.test.embeddings import Embedder, EmbeddingCache, embed_texts, text_hash

    rows: list[tuple[str, str]] = []
    started = time.perf_counter()
    history, posts = build_world(args)
    rows.append(("catalog", f"{len(posts):,} posts, {len(history):,} events"))
    rows.append(("world build", f"{time.perf_counter() - started:.1f} s"))
    rows.append(("RSS before the model", f"{rss_mb():.0f} MB"))

    embedder = Embedder(args.embedding_model)
    t = time.perf_counter()
    embedder.model()
    rows.append(("model load", f"{time.perf_counter() - t:.1f} s ({embedder.name})"))
    t = time.perf_counter()
    vectors, _, fresh = embed_texts(embedder, posts.texts, progress=True)
    seconds = time.perf_counter() - t
    words = np.mean([len(x.split()) for x in posts.texts])
    rows.append(
        (
            "embedding throughput",
            f"{fresh / seconds:.0f} posts/s ({fresh:,} texts, {words:.0f} words avg, "
            f"{seconds:.1f} s, cold cache)",
        )
    )

    span = history.time_range()
    assert span is not None
    t0 = span[1] - timedelta(days=3)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "test"
        cache = EmbeddingCache(embedder.name)
        cache.update([text_hash(x) for x in posts.texts], vectors)
        config = test.config(iterations=200, max_cutoffs=4, step_days=2, min_history_days=7)
        t = time.perf_counter()
        _seed_artifact_cache(out, cache)
        data = TrainingSet(history, posts, None, t0)
        test.train(data, out, config, cache_from=out, progress=True)
        rows.append(("train (200 trees, cached vectors)", f"{time.perf_counter() - t:.1f} s"))
        model = load_model("test", out, history)
        one_blas_thread()  # as the gateway and model services do; torch keeps its threads
        model.ranker.extension.embedder = embedder  # the BERT stays loaded for new posts
        rows.append(("RSS with the model + artifact loaded", f"{rss_mb():.0f} MB"))

        rng = np.random.default_rng(args.seed)
        active = history.users_before(span[1])
        users = rng.choice(active, size=args.requests)
        base_us = int((span[1] - from_us(0)) / timedelta(microseconds=1))
        for u in users[:50]:  # warm-up
            model.recommend(int(u), span[1], 5)
        latencies = []
        for i, u in enumerate(users):
            at = from_us(base_us + i * 1_000_000)
            t = time.perf_counter()
            recs = model.recommend(int(u), at, 5)
            latencies.append((time.perf_counter() - t) * 1000)
            assert len(recs) == len(set(recs)) == 5
        p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
        rows.append(
            (
                "recommend() latency",
                f"p50 {p50:.2f} ms, p95 {p95:.2f} ms, p99 {p99:.2f} ms "
                f"({args.requests} calls, limit 5; budget p50 ≤ 5, p99 ≤ 20)",
            )
        )
        t = time.perf_counter()
        model.add_posts([10**9], ["Breaking: a new post arrives and is embedded on arrival"])
        rows.append(("add_posts (1 new post)", f"{(time.perf_counter() - t) * 1000:.0f} ms"))
        rows.append(("RSS at the end", f"{rss_mb():.0f} MB"))

    width = max(len(k) for k, _ in rows)
    print(f"\n{'test arm':<{width}}  value")
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def _seed_artifact_cache(out: Path, cache) -> None:
    """Write the already computed vectors where `train(cache_from=out)` looks for them, so the
    benchmark embeds the catalog once (the throughput row) and not again while training."""
    from feedlab.models.test import EMBEDDINGS_FILE

    out.mkdir(parents=True, exist_ok=True)
    hashes = list(cache.vectors)
    np.savez(
        out / EMBEDDINGS_FILE,
        post_ids=np.arange(len(hashes)),
        text_hashes=np.array(hashes, dtype=str),
        vectors=np.stack([cache.vectors[h] for h in hashes]),
    )


if __name__ == "__main__":
    main()
