"""The gateway FastAPI app. Routes stay thin: validation is in `schemas`, the work in
`recommend`, `feed` and `runtime`; state is loaded once in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from feedlab.experiments.config import ConfigError, LoadedConfig
from feedlab.gateway.exposures import ConfigRecord
from feedlab.gateway.feed import (
    EventConflict,
    apply_events,
    apply_stored,
    store_events,
    unknown_posts,
)
from feedlab.gateway.feed_sync import follow_feed
from feedlab.gateway.recommend import serve
from feedlab.gateway.schemas import (
    FEED_BODY_TAGS,
    AdminConfigOut,
    ConfigErrorOut,
    ErrorOut,
    FeedBody,
    FeedOut,
    HealthOut,
    ModelHealth,
    RecommendationsOut,
    RecommendationsQuery,
    ReloadOut,
    ValidationErrorOut,
)
from feedlab.gateway.settings import Settings
from feedlab.gateway.state import DatabaseUnavailable, GatewayState
from feedlab.models.base import Event
from feedlab.models.threads import one_blas_thread
from feedlab.storage.clock import utcnow
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger("feedlab.gateway")

_bearer = HTTPBearer(auto_error=False, description="FEEDLAB_ADMIN_TOKEN")


ADMIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or wrong bearer token."},
    403: {"description": "Admin endpoints disabled (FEEDLAB_ADMIN_TOKEN unset)."},
}
NOT_READY = "not ready: waiting for the database (no local snapshot to start from)"
RETRY_S = 0.5


async def get_state(request: Request) -> GatewayState:
    """Async on purpose: FastAPI runs a sync dependency in a thread pool, per request.
    503 until the state is loaded (the database was down at start and no snapshot exists)."""
    state: GatewayState | None = getattr(request.app.state, "gateway", None)
    if state is None:
        raise HTTPException(503, NOT_READY, headers={"Retry-After": "1"})
    return state


State = Annotated[GatewayState, Depends(get_state)]


def require_admin(
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """403 when FEEDLAB_ADMIN_TOKEN is unset (admin disabled), 401 on a missing/wrong token."""
    token = state.settings.admin_token
    if not token:
        raise HTTPException(403, "admin endpoints disabled: FEEDLAB_ADMIN_TOKEN is not set")
    given = credentials.credentials if credentials else ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise HTTPException(
            401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


def create_app(settings: Settings | None = None) -> FastAPI:
    """The gateway app for `settings` (default: from the environment)."""
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        one_blas_thread()
        app.state.gateway = None
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        try:
            state = await asyncio.to_thread(GatewayState.load, settings)
        except DatabaseUnavailable as exc:
            log.error("%s; not ready, retrying", exc)
            tasks.append(asyncio.create_task(_start_when_database_returns(app, settings, stop)))
        else:
            tasks += await _begin(app, state, stop)
        try:
            yield
        finally:
            stop.set()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(task, 5)
            state = app.state.gateway
            if state is not None:
                await _end(state)

    app = FastAPIOffline(  # /docs and /redoc with Swagger UI / ReDoc from the package, no CDN
        title="feedlab gateway",
        description="A/B experiment gateway for feed recommenders (see docs/architecture.md).",
        version="0.1.0",
        lifespan=lifespan,
        responses={
            400: {"model": ErrorOut, "description": "The body is not valid JSON."},
            503: {
                "model": ErrorOut,
                "description": "Not ready, or the database is "
                "unavailable for a call that needs it; retry.",
            },
        },
    )
    app.add_exception_handler(RequestValidationError, _validation_error)

    @app.get(
        "/post/recommendations/",
        response_model=RecommendationsOut,
        responses={
            422: {
                "model": ValidationErrorOut,
                "description": "A parameter is invalid; `message` names it.",
            }
        },
    )
    async def recommendations(
        request: Request,
        query: Annotated[RecommendationsQuery, Query()],
        x_feedlab_qa: Annotated[
            bool, Header(description="1 marks a QA request: served, logged, never analysed")
        ] = False,
    ) -> Response:
        """Posts for user `id` from the arm the user is assigned to."""
        state = await get_state(request)  # not a dependency: FastAPI solves those per call
        at = query.time or utcnow()
        if state.online is not None:
            await state.online.sync(state.history)
        served = await serve(state, query.id, at, query.limit, qa=x_feedlab_qa)
        return Response(
            served.body,
            media_type="application/json",
            headers={"X-Request-ID": served.request_id},
        )

    @app.post(
        "/feed",
        response_model=FeedOut,
        responses={
            409: {"model": ErrorOut, "description": "An `event_id` reused with other content."},
            422: {
                "model": ValidationErrorOut,
                "description": "An event is invalid or names an unknown post; `message` names "
                "the field.",
            },
        },
    )
    async def post_feed(state: State, body: FeedBody) -> FeedOut:
        """Views and likes (one or a list) of known posts; a repeated `event_id` with the same
        content is accepted and stored once, with other content the whole request is refused
        (409)."""
        events = body if isinstance(body, list) else [body]
        unknown = unknown_posts(events, state.post_json, batch=isinstance(body, list))
        if unknown:
            raise RequestValidationError(unknown)
        try:
            timeout = state.settings.db_timeout
            new = await asyncio.to_thread(store_events, state.engine, events, timeout)
        except EventConflict as exc:
            raise HTTPException(409, str(exc)) from None
        except SQLAlchemyError as exc:
            log.error("POST /feed: database error: %s", exc)
            raise HTTPException(
                503, "database unavailable, retry (events are idempotent)"
            ) from None
        await apply_stored(state, new)
        state.metrics.feed_events.labels("stored").inc(len(new))
        state.metrics.feed_events.labels("duplicate").inc(len(events) - len(new))
        return FeedOut(received=len(events), stored=len(new), duplicates=len(events) - len(new))

    @app.get("/health", response_model=HealthOut)
    async def health(state: State) -> HealthOut:
        """Liveness and what is loaded; with Redis configured, asks it (bounded) first, so
        polling `/health` also brings a replica back once Redis returns."""
        if state.online is not None:
            await state.online.sync(state.history)
        runtime = state.holder.current
        exposure_log = state.exposure_log
        return HealthOut(
            status="ok",
            database="up" if exposure_log.database_up() else "down",
            redis=_redis_status(state),
            redis_pending_events=state.online.pending if state.online else 0,
            started_from=state.started_from,
            exposure_durability=exposure_log.durability,
            config_version=runtime.version,
            config_path=str(state.holder.path),
            models={
                name: ModelHealth(backend=b.kind, version=b.version)
                for name, b in runtime.backends.items()
            },
            posts=len(state.posts),
            history_events=len(state.history),
            exposure_queue_depth=exposure_log.depth(),
            exposure_spool_files=exposure_log.pending_spool(),
            exposures_dead_lettered=exposure_log.stats.dead_lettered,
        )

    @app.get("/metrics", response_class=Response)
    async def metrics(state: State) -> Response:
        """Prometheus text format."""
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/admin/reload",
        response_model=ReloadOut,
        dependencies=[Depends(require_admin)],
        responses={
            **ADMIN_RESPONSES,
            422: {
                "model": ReloadOut | ValidationErrorOut,
                "description": "The config file was refused, or a parameter is invalid.",
            },
        },
    )
    async def admin_reload(
        state: State,
        models: Annotated[
            bool, Query(description="Also reload unchanged models (retrained artifacts).")
        ] = False,
    ) -> JSONResponse | ReloadOut:
        """Reload the experiments file now; an invalid file is refused (422), config kept."""
        before = state.holder.current.version
        try:
            runtime = await state.holder.reload("admin", reload_models=models)
        except ConfigError as exc:
            out = ReloadOut(
                status="refused",
                config_version=before,
                changed=False,
                error=_error_out(exc, state.holder.last_error_at),
            )
            return JSONResponse(out.model_dump(mode="json"), status_code=422)
        return ReloadOut(
            status="ok", config_version=runtime.version, changed=runtime.version != before
        )

    @app.get(
        "/admin/config",
        response_model=AdminConfigOut,
        dependencies=[Depends(require_admin)],
        responses=ADMIN_RESPONSES,
    )
    async def admin_config(state: State) -> AdminConfigOut:
        """The config in force, every version this process served, and the last refusal."""
        holder = state.holder
        runtime = holder.current
        return AdminConfigOut(
            config_version=runtime.version,
            config_path=str(holder.path),
            loaded_at=runtime.loaded_at,
            yaml=runtime.loaded.text,
            config=runtime.loaded.config.model_dump(mode="json"),
            versions=holder.versions,
            last_error=_error_out(holder.last_error, holder.last_error_at),
        )

    return app


def _redis_status(state: GatewayState) -> Literal["up", "down", "off"]:
    """off: no Redis configured; down: the last call failed (serving from local state)."""
    if state.online is None:
        return "off"
    return "up" if state.online.up else "down"


def _config_loaded(state: GatewayState, loaded: LoadedConfig, at: datetime) -> None:
    """Store every config served under in `experiment_configs` (through the exposure log, so
    it survives a database outage) and expose its version as a metric."""
    state.exposure_log.submit(ConfigRecord(loaded.version, at, loaded.text))
    state.metrics.set_config_version(loaded.version)


async def _begin(
    app: FastAPI, state: GatewayState, stop: asyncio.Event
) -> list[asyncio.Task[None]]:
    """Start serving `state`: the exposure writer, the config, the watcher and feed follower."""
    state.exposure_log.start()
    state.holder.on_new_config = lambda loaded, at: _config_loaded(state, loaded, at)
    state.holder.on_reload = state.metrics.count_reload
    await state.holder.reload("startup")
    app.state.gateway = state
    tasks = []
    if state.settings.watch_config:
        tasks.append(asyncio.create_task(state.holder.watch(stop)))
    if state.follower is not None:
        interval = state.settings.feed_sync_interval or 0.1

        async def apply(events: list[Event]) -> None:
            await apply_events(state, events)

        tasks.append(asyncio.create_task(follow_feed(state.follower, interval, stop, apply)))
    return tasks


async def _end(state: GatewayState) -> None:
    await state.holder.aclose()
    if state.online is not None:
        await state.online.aclose()
    await asyncio.to_thread(state.exposure_log.close, state.settings.shutdown_grace)
    state.engine.dispose()


async def _start_when_database_returns(
    app: FastAPI, settings: Settings, stop: asyncio.Event
) -> None:
    """Retry the start-up load with exponential backoff until it succeeds or we stop."""
    delay = RETRY_S
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        if stop.is_set():
            return
        try:
            state = await asyncio.to_thread(GatewayState.load, settings)
        except DatabaseUnavailable as exc:
            delay = min(delay * 2, settings.startup_retry_max)
            log.warning("still not ready (%s); next try in %.1f s", exc, delay)
            continue
        inner = await _begin(app, state, stop)
        log.info("database available: serving")
        await stop.wait()
        for task in inner:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, 5)
        return


def _error_out(exc: ConfigError | None, at: datetime | None) -> ConfigErrorOut | None:
    if exc is None:
        return None
    return ConfigErrorOut(
        at=at,
        message=str(exc),
        issues=[{"field": i.field, "line": i.line, "message": i.message} for i in exc.issues],
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 plus a `message` that names each bad parameter, the errors of one event
    of a `POST /feed` batch under one `event [i]`."""
    assert isinstance(exc, RequestValidationError)
    errors = [
        {**e, "loc": tuple(p for p in e.get("loc", ()) if p not in FEED_BODY_TAGS)}
        for e in exc.errors()
    ]
    grouped: dict[str, list[str]] = {}
    for err in errors:
        loc = [p for p in err["loc"] if p not in ("query", "body")]
        event = f"event [{loc.pop(0)}]: " if loc and isinstance(loc[0], int) else ""
        grouped.setdefault(event, []).append(
            f"{'.'.join(map(str, loc)) or 'request'}: {err['msg']}"
        )
    state = getattr(request.app.state, "gateway", None)
    if state is not None:
        state.metrics.bad_requests.labels(request.url.path).inc()
    detail = [{k: v for k, v in e.items() if k != "ctx" and k != "input"} for e in errors]
    message = "; ".join(event + ", ".join(parts) for event, parts in grouped.items())
    return JSONResponse({"message": message, "detail": detail}, status_code=422)
