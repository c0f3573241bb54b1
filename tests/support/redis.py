"""Redis for tests: the shared server (a dedicated db and a key prefix per test, removed
afterwards) and private servers a test may stop and start (`redis-server --save ''` on a free
port), so the shared one is never stopped."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import redis

from feedlab.processes import free_port

REDIS_URL = os.environ.get("FEEDLAB_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
"""The shared server and the db number the tests use (not the product's default db 0)."""


def upstream_of(url: str) -> tuple[str, int]:
    """(host, port) of a Redis URL, for a `TcpProxy` in front of it."""
    parsed = urlsplit(url)
    return parsed.hostname or "127.0.0.1", parsed.port or 6379


def redis_unavailable() -> str | None:
    """None when the shared Redis answers, else why not."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        return f"Redis at {REDIS_URL} unreachable: {exc.__class__.__name__}: {exc}"
    return None


@dataclass(frozen=True)
class RedisSpace:
    """A Redis URL and a key prefix no other test uses."""

    url: str
    prefix: str

    def env(self) -> dict[str, str]:
        return {"FEEDLAB_REDIS_URL": self.url, "FEEDLAB_REDIS_PREFIX": self.prefix}

    def keys(self) -> list[bytes]:
        return list(redis.Redis.from_url(self.url).scan_iter(f"{self.prefix}*"))


def shared_space() -> Iterator[RedisSpace]:
    """A fresh prefix on the shared server; its keys are deleted afterwards."""
    space = RedisSpace(REDIS_URL, f"feedlab-test-{uuid.uuid4().hex[:12]}:")
    try:
        yield space
    finally:
        keys = space.keys()
        if keys:
            redis.Redis.from_url(space.url).delete(*keys)


class PrivateRedis:
    """A redis-server of this test only, on a free port, keeping nothing on disk: `stop()`
    ends it (its data with it), `start()` runs a new one on the same port."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed")
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        with open(self.folder / f"redis-{self.port}.log", "ab") as log:
            self.proc = subprocess.Popen(
                [*args, "--appendonly", "no", "--dir", str(self.folder)], stdout=log, stderr=log
            )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self.proc = None
