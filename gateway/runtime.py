"""The gateway's live state: the config in force, its assigner and its model backends.

A `Runtime` is immutable; a reload builds a new one beside the old (reusing backends whose
spec did not change) and swaps a single reference, so every request sees one consistent
config. An invalid file, or a model that fails to load, leaves the running Runtime in place
and is remembered as `last_error` for `GET /admin/config`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from feedlab.experiments.assignment import Assigner
from feedlab.experiments.config import (
    ConfigError,
    ConfigIssue,
    HttpModel,
    InprocessModel,
    LoadedConfig,
    load_config,
)
from feedlab.gateway.backends import Backend, HttpBackend, InprocessBackend
from feedlab.models.catalog import PostCatalog
from feedlab.models.history import History
from feedlab.models.registry import load_warm
from feedlab.storage.clock import utcnow

log = logging.getLogger("feedlab.gateway")


@dataclass(frozen=True)
class Runtime:
    loaded: LoadedConfig
    assigner: Assigner
    backends: dict[str, Backend]
    specs: dict[str, InprocessModel | HttpModel]
    loaded_at: datetime = field(default_factory=utcnow)

    @property
    def version(self) -> str:
        return self.loaded.version


async def build_runtime(
    loaded: LoadedConfig,
    history: History,
    posts: PostCatalog,
    previous: Runtime | None = None,
) -> Runtime:
    """Load the backends `loaded` routes to; raise ConfigError (with lines) if one fails."""
    cfg = loaded.config
    backends: dict[str, Backend] = {}
    specs = {name: cfg.model_spec(name) for name in sorted(cfg.model_names())}
    issues: list[ConfigIssue] = []
    for name, spec in specs.items():
        if previous is not None and previous.specs.get(name) == spec:
            backends[name] = previous.backends[name]
            continue
        if isinstance(spec, HttpModel):
            backend = HttpBackend(name, spec.url, spec.timeout_ms)
            await backend.probe()
            backends[name] = backend
            continue
        artifact = Path(spec.artifact) if spec.artifact else None
        try:
            model = await asyncio.to_thread(load_warm, name, artifact, history, posts)
        except Exception as exc:  # any load failure refuses the whole config
            loc = ("models", name) if name in cfg.models else ("default_model",)
            issues.append(loaded.issue(loc, f"model {name!r} failed to load: {exc}"))
            continue
        backends[name] = InprocessBackend(name, model)
    if issues:
        raise ConfigError(loaded.source, issues)
    return Runtime(loaded, Assigner(cfg), backends, specs)


class RuntimeHolder:
    """Owns the current Runtime; reloads it from the config file on demand or on change."""

    def __init__(self, path: Path, history: History, posts: PostCatalog) -> None:
        self.path = Path(path)
        self.history = history
        self.posts = posts
        self._current: Runtime | None = None
        self.last_error: ConfigError | None = None
        self.last_error_at: datetime | None = None
        self.versions: list[tuple[str, datetime]] = []
        self._lock = asyncio.Lock()
        self.on_new_config: Callable[[LoadedConfig, datetime], None] | None = None
        """Called with each newly applied config (the app stores it and updates metrics)."""
        self.on_reload: Callable[[str, str], None] | None = None
        """Called with (source, outcome) of every reload: applied | unchanged | refused."""

    @property
    def current(self) -> Runtime:
        """The Runtime in force (the app's start loads the first one before serving)."""
        if self._current is None:
            raise RuntimeError("no config loaded yet")
        return self._current

    async def reload(self, source: str, reload_models: bool = False) -> Runtime:
        """Load the file; on success swap the Runtime, on failure keep it and raise.
        `source` says what asked (startup, file, admin); every outcome is logged and passed to
        `on_reload`. `reload_models` reloads every backend even if its spec is unchanged (a
        retrained artifact in the same folder)."""
        async with self._lock:
            try:
                loaded = await asyncio.to_thread(load_config, self.path)
                current = self._current
                unchanged = current is not None and loaded.version == current.version
                if current is not None and unchanged and not reload_models:
                    self.last_error = None
                    self._reloaded(source, "unchanged")
                    log.info(
                        "config reload (%s) of %s: unchanged, version %s stays in force",
                        source,
                        self.path,
                        loaded.version,
                    )
                    return current
                previous = None if reload_models else current
                runtime = await build_runtime(loaded, self.history, self.posts, previous)
            except ConfigError as exc:
                self.last_error, self.last_error_at = exc, utcnow()
                self._reloaded(source, "refused")
                log.error("config reload (%s) refused, keeping the running config: %s", source, exc)
                raise
            old, self._current = self._current, runtime
            self.last_error = None
            if not unchanged:
                self.versions.append((runtime.version, runtime.loaded_at))
            if self.on_new_config is not None and not unchanged:
                self.on_new_config(loaded, runtime.loaded_at)
            self._reloaded(source, "applied")
            log.info(
                "config reload (%s) of %s: applied, version %s in force",
                source,
                self.path,
                runtime.version,
            )
            if old is not None:
                await _close_unused(old, runtime)
            return runtime

    def _reloaded(self, source: str, outcome: str) -> None:
        if self.on_reload is not None:
            self.on_reload(source, outcome)

    async def watch(self, stop: asyncio.Event) -> None:
        """Reload when the file changes (editors often replace it, so watch its folder)."""
        from watchfiles import awatch

        target = self.path.resolve()

        def is_target(_change: object, changed: str) -> bool:
            return Path(changed).resolve() == target

        async for _ in awatch(
            target.parent, watch_filter=is_target, debounce=200, step=50, stop_event=stop
        ):
            with contextlib.suppress(ConfigError):  # logged and kept in last_error
                await self.reload("file")

    async def aclose(self) -> None:
        if self._current is not None:
            for backend in self._current.backends.values():
                await backend.aclose()


async def _close_unused(old: Runtime, new: Runtime) -> None:
    kept = {id(b) for b in new.backends.values()}
    for backend in old.backends.values():
        if id(backend) not in kept:
            await backend.aclose()
