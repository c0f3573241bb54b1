"""Model backends as the gateway calls them: in process, or over HTTP to `feedlab serve-model`.

Both answer `await recommend(user_id, at, limit) -> list[int]` and raise on any failure; the
gateway turns a failure (or an HTTP timeout) into a fallback list. Values from a model service
are checked here, at the boundary (ids in range, a storable version string). Model services
read feed events from the database themselves (`gateway.feed_sync`). In-process models run on
the event loop thread: they are fast, and the shared History is only mutated there too.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Protocol

import httpx
from feedlab.gateway.schemas import MAX_ID
from feedlab.models.base import Recommender

log = logging.getLogger("feedlab.gateway")

MAX_VERSION_LEN = 64
"""`exposures.model_version` is VARCHAR(64)."""


class BackendError(RuntimeError):
    """A backend answered, but not with a usable list."""


class Backend(Protocol):
    name: str
    kind: str

    @property
    def version(self) -> str | None: ...

    async def recommend(self, user_id: int, at: datetime, limit: int) -> list[int]: ...

    async def aclose(self) -> None: ...


class InprocessBackend:
    """A model loaded in this process: it reads the gateway's own History, so stored events
    reach it without being told."""

    kind = "inprocess"

    def __init__(self, name: str, model: Recommender) -> None:
        self.name = name
        self.model = model

    @property
    def version(self) -> str | None:
        return self.model.version

    async def recommend(self, user_id: int, at: datetime, limit: int) -> list[int]:
        return self.model.recommend(user_id, at, limit)

    async def aclose(self) -> None:
        return None


class HttpBackend:
    """A standalone model service; `timeout_ms` bounds every call (connect + read)."""

    kind = "http"

    def __init__(self, name: str, url: str, timeout_ms: int) -> None:
        self.name = name
        self.url = url.rstrip("/")
        self.timeout_ms = timeout_ms
        self._version: str | None = None
        self._client = httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(timeout_ms / 1000),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )

    @property
    def version(self) -> str | None:
        return self._version

    async def probe(self) -> None:
        """Learn the model version from the service's /health; a service that is down now
        is not an error here (requests fall back until it answers)."""
        try:
            r = await self._client.get("/health")
            r.raise_for_status()
            self._version = _checked_version(self.name, r.json().get("version"))
        except (httpx.HTTPError, ValueError, AttributeError, BackendError) as exc:
            log.warning("model %s at %s not reachable yet: %s", self.name, self.url, exc)

    async def recommend(self, user_id: int, at: datetime, limit: int) -> list[int]:
        r = await self._client.get(
            "/recommend", params={"user_id": user_id, "at": at.isoformat(), "limit": limit}
        )
        r.raise_for_status()
        body = r.json()
        post_ids = body.get("post_ids") if isinstance(body, dict) else None
        if not isinstance(post_ids, list) or not all(
            isinstance(p, int) and 0 <= p <= MAX_ID for p in post_ids
        ):
            raise BackendError(f"model {self.name}: malformed answer {str(body)[:200]}")
        self._version = _checked_version(self.name, body.get("version", self._version))
        return post_ids

    async def aclose(self) -> None:
        await self._client.aclose()


def _checked_version(name: str, version: object) -> str | None:
    """A model version the exposure log can store (a string of at most 64 characters, no NUL),
    else BackendError: the request falls back instead of logging a row the database refuses."""
    if version is None or (
        isinstance(version, str) and len(version) <= MAX_VERSION_LEN and "\x00" not in version
    ):
        return version
    raise BackendError(f"model {name}: invalid version {str(version)[:100]!r}")
