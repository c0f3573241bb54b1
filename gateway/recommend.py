"""Serving one recommendation request: assign, ask the arm's backend, fall back, log.

The response always carries the assigned arm as `exp_group`, also when the arm's model failed
and the `popular` list was served instead (the exposure records `fallback=true`).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

import httpx
import numpy as np
import orjson
from feedlab.gateway.backends import Backend
from feedlab.gateway.exposures import ExposureRecord
from feedlab.gateway.state import GatewayState
from feedlab.storage.clock import utcnow

log = logging.getLogger("feedlab.gateway")


@dataclass(frozen=True, slots=True)
class Served:
    body: bytes
    request_id: str


async def serve(state: GatewayState, user_id: int, at: datetime, limit: int) -> Served:
    start = time.perf_counter()
    runtime = state.holder.current
    who = runtime.assigner.assign(user_id)
    backend: Backend = runtime.backends[who.model] if state.is_known(user_id) else state.popular
    fallback = False
    try:
        post_ids = await backend.recommend(user_id, at, limit)
    except Exception as exc:  # any model failure is served from the fallback, never a 5xx
        reason = "timeout" if isinstance(exc, httpx.TimeoutException) else type(exc).__name__
        state.metrics.errors.labels(who.experiment or "", who.exp_group, backend.name, reason).inc()
        state.metrics.fallbacks.labels(who.experiment or "", who.exp_group, backend.name).inc()
        log.warning(
            "model %s failed for user %s (%s), serving fallback", backend.name, user_id, exc
        )
        fallback, backend = True, state.popular
        post_ids = await backend.recommend(user_id, at, limit)
    post_ids = _clean(state, user_id, at, post_ids, limit)
    body = orjson.dumps(
        {
            "exp_group": who.exp_group,
            "recommendations": [state.post_json[p] for p in post_ids],
        }
    )
    latency = time.perf_counter() - start
    request_id = str(uuid.uuid4())
    state.exposure_log.submit(
        ExposureRecord(
            request_id=request_id,
            ts=at,
            served_at=utcnow(),
            user_id=user_id,
            experiment=who.experiment,
            config_version=runtime.version,
            exp_group=who.exp_group,
            model=backend.name,
            model_version=backend.version,
            post_ids=post_ids,
            fallback=fallback,
            latency_ms=round(latency * 1000, 3),
        )
    )
    state.metrics.requests.labels(who.experiment or "", who.exp_group).inc()
    state.metrics.latency.labels(who.experiment or "", who.exp_group).observe(latency)
    return Served(body, request_id)


def _clean(
    state: GatewayState, user_id: int, at: datetime, post_ids: list[int], limit: int
) -> list[int]:
    """Enforce the contract whatever the backend did: posts we can show, none the user liked
    before `at`, no repeats, at most `limit`."""
    liked = state.history.liked_before(user_id, at)
    liked_set = set(liked.tolist()) if isinstance(liked, np.ndarray) else set(liked)
    out: list[int] = []
    seen: set[int] = set()
    for p in post_ids:
        p = int(p)
        if p in seen or p in liked_set or p not in state.post_json:
            continue
        seen.add(p)
        out.append(p)
        if len(out) == limit:
            break
    return out
