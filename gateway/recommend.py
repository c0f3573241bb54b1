"""Serving one recommendation request: assign, ask the arm's backend (or, in an interleaving
experiment, both arms' backends, merged by team draft), fall back, log.

The response always carries the assigned arm as `exp_group`, also when the arm's model failed
and the `popular` list was served instead (the exposure records `fallback=true`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

import httpx
import orjson
from feedlab.experiments.assignment import Assignment
from feedlab.experiments.config import INTERLEAVED_GROUP
from feedlab.gateway.backends import Backend
from feedlab.gateway.exposures import ExposureRecord
from feedlab.gateway.interleaving import request_seed, team_draft
from feedlab.gateway.state import GatewayState
from feedlab.storage.clock import utcnow
from feedlab.storage.schema import MODEL_VERSION_CHARS

log = logging.getLogger("feedlab.gateway")


@dataclass(frozen=True, slots=True)
class Served:
    body: bytes
    request_id: str


@dataclass(frozen=True, slots=True)
class _Picked:
    """What a request serves and how it came about (the exposure's model columns)."""

    post_ids: list[int]
    model: str
    model_version: str | None
    fallback: bool
    teams: list[str] | None = None
    seed: int | None = None


async def serve(
    state: GatewayState, user_id: int, at: datetime, limit: int, qa: bool = False
) -> Served:
    start = time.perf_counter()
    runtime = state.holder.current
    who = runtime.assigner.assign(user_id)
    request_id = _request_id()
    known = state.is_known(user_id)
    if who.teams and known:
        teams = [(arm, runtime.backends[model]) for arm, model in who.teams]
        picked = await _interleave(state, who, teams, user_id, at, limit, request_id)
    else:
        backend = runtime.backends[who.model] if known else state.popular
        picked = await _single(state, who, backend, user_id, at, limit)
    body = orjson.dumps(
        {
            "exp_group": who.exp_group,
            "recommendations": [state.post_json[p] for p in picked.post_ids],
        }
    )
    latency = time.perf_counter() - start
    await state.exposure_log.log(
        ExposureRecord(
            request_id=request_id,
            ts=at,
            served_at=utcnow(),
            user_id=user_id,
            experiment=who.experiment,
            config_version=runtime.version,
            exp_group=who.exp_group,
            model=picked.model,
            model_version=picked.model_version,
            post_ids=picked.post_ids,
            fallback=picked.fallback,
            latency_ms=round(latency * 1000, 3),
            teams=picked.teams,
            seed=picked.seed,
            qa=qa or who.qa,
        )
    )
    state.metrics.served(who.experiment or "", who.exp_group, latency)
    return Served(body, request_id)


async def _ask(
    state: GatewayState, who: Assignment, backend: Backend, user_id: int, at: datetime, limit: int
) -> list[int] | None:
    """The backend's cleaned list, or None when it failed (counted and logged)."""
    try:
        post_ids = await backend.recommend(user_id, at, limit)
    except Exception as exc:  # any model failure is served from a fallback, never a 5xx
        reason = "timeout" if isinstance(exc, httpx.TimeoutException) else type(exc).__name__
        state.metrics.errors.labels(who.experiment or "", who.exp_group, backend.name, reason).inc()
        state.metrics.fallbacks.labels(who.experiment or "", who.exp_group, backend.name).inc()
        log.warning(
            "model %s failed for user %s (%s), serving fallback", backend.name, user_id, exc
        )
        return None
    return _clean(state, user_id, at, post_ids, limit)


async def _single(
    state: GatewayState, who: Assignment, backend: Backend, user_id: int, at: datetime, limit: int
) -> _Picked:
    post_ids = await _ask(state, who, backend, user_id, at, limit)
    if post_ids is not None:
        return _Picked(post_ids, backend.name, backend.version, False)
    return await _popular(state, user_id, at, limit)


async def _popular(state: GatewayState, user_id: int, at: datetime, limit: int) -> _Picked:
    post_ids = await state.popular.recommend(user_id, at, limit)
    post_ids = _clean(state, user_id, at, post_ids, limit)
    return _Picked(post_ids, state.popular.name, state.popular.version, True)


async def _interleave(
    state: GatewayState,
    who: Assignment,
    teams: list[tuple[str, Backend]],
    user_id: int,
    at: datetime,
    limit: int,
    request_id: str,
) -> _Picked:
    """Both arms asked at once (each within its own timeout), merged by team draft. If one
    arm fails its rival's list is served whole, as a fallback: credit analysis skips it."""
    (arm_a, a), (arm_b, b) = teams
    lists = await asyncio.gather(
        _ask(state, who, a, user_id, at, limit), _ask(state, who, b, user_id, at, limit)
    )
    if lists[0] is not None and lists[1] is not None:
        seed = request_seed(request_id)
        merged = team_draft(lists[0], lists[1], limit, seed)
        names = (arm_a, arm_b)
        return _Picked(
            merged.post_ids,
            INTERLEAVED_GROUP,
            _joined_version(a.version, b.version),
            False,
            [names[t] for t in merged.teams],
            seed,
        )
    for (arm, backend), post_ids in zip(teams, lists, strict=True):
        if post_ids is not None:
            return _Picked(post_ids, backend.name, backend.version, True, [arm] * len(post_ids))
    return await _popular(state, user_id, at, limit)


_ids = random.Random()
"""Request ids: `uuid4` makes a system call per request, and releasing the GIL for it let the
exposure writer thread hold the event loop for a whole switch interval. Seeded from
`os.urandom` per process (again in a forked child), so ids stay unique across workers and
unpredictable enough to seed an interleaved request's coin."""
os.register_at_fork(after_in_child=_ids.seed)


def _request_id() -> str:
    return str(uuid.UUID(int=_ids.getrandbits(128), version=4))


def _joined_version(a: str | None, b: str | None) -> str | None:
    """Both arms' model versions in the exposure's one version column (clipped to fit it)."""
    if a is None and b is None:
        return None
    return f"{a or '?'}+{b or '?'}"[:MODEL_VERSION_CHARS]


def _clean(
    state: GatewayState, user_id: int, at: datetime, post_ids: list[int], limit: int
) -> list[int]:
    """Enforce the contract whatever the backend did: posts we can show, none the user liked
    before `at`, no repeats, at most `limit`."""
    liked_set = set(state.history.liked_before(user_id, at).tolist())
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
