"""Test kit for the gateway: a real uvicorn server on a free loopback port in a thread, a tiny
seeded world, a config writer, a load loop, and a loopback TCP proxy that can sever and restore
the database connection without touching the real database server."""

from __future__ import annotations

import contextlib
import select as io_select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from feedlab.gateway.settings import Settings
from feedlab.storage.schema import feed, posts, users
from sqlalchemy import Engine, Table, func, insert, select
from sqlalchemy.engine import make_url

from feedlab.processes import free_port
from tests.support.db import migrated

T0 = datetime(2024, 1, 1)
TOPICS = ("news", "sport", "movie", "tech")


class Clock:
    """A monotonic clock a test moves by hand (`clock.now += 5`)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def wait_until(check: Callable[[], bool], timeout: float = 15.0, interval: float = 0.05) -> bool:
    """Poll `check` until it holds or `timeout` passes (bounded); the gateway writes exposures
    and forwards events asynchronously by design, so tests wait for them this way."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


def seed_world(engine: Engine, n_users: int = 10, n_posts: int = 30) -> None:
    """Users 1..n_users, posts 1..n_posts, and likes/views in January 2024 that make lower
    post ids more popular. User 1 liked posts 1-3 (so they must never be served to user 1
    after that)."""
    rows = []
    for u in range(1, n_users + 1):
        for k in range(1, 1 + (n_posts // 3)):
            post = 1 + ((u + k * k) % n_posts) if u != 1 else k
            action = "like" if (u == 1 and k <= 3) or (u + k) % 3 == 0 else "view"
            ts = T0 + timedelta(hours=u * 7 + k)
            rows.append({"timestamp": ts, "user_id": u, "post_id": post, "action": action})
    with engine.begin() as conn:
        conn.execute(insert(users), [{"user_id": u, "age": 20 + u} for u in range(1, n_users + 1)])
        conn.execute(
            insert(posts),
            [
                {"post_id": p, "text": f"post number {p}", "topic": TOPICS[p % len(TOPICS)]}
                for p in range(1, n_posts + 1)
            ],
        )
        conn.execute(insert(feed), rows)


def seeded_gateway(url: str, folder: Path, **settings: Any) -> tuple[Engine, Settings]:
    """A migrated database at `url` holding `seed_world`, and gateway settings over it (the
    config and the spool in `folder`)."""
    engine = migrated(url)
    seed_world(engine)
    config = write_config(folder / "exp.yaml")
    return engine, Settings(
        database_url=url, config_path=config, spool_dir=folder / "spool", **settings
    )


def write_config(path: Path, salt: str = "s1", traffic: float = 100, **models: str) -> Path:
    """A config with one running 50/50 experiment; arms use `popular` unless given."""
    control = models.get("control", "popular")
    test = models.get("test", "popular")
    extra = models.get("models", "")
    path.write_text(
        f"""default_model: popular
experiments:
  - name: exp1
    status: running
    salt: "{salt}"
    traffic: {traffic}
    arms:
      - {{name: control, model: {control}, weight: 50}}
      - {{name: test, model: {test}, weight: 50}}
models:
  popular: {{backend: inprocess}}
{extra}"""
    )
    return path


class ServerThread:
    """A uvicorn server for `app` in a background thread on 127.0.0.1."""

    def __init__(self, app: FastAPI, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("gateway did not start (see log)")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


class TcpProxy:
    """Loopback TCP proxy to `upstream`; `sever()` drops every connection and refuses new
    ones (the database looks unreachable), `restore()` listens again on the same port.
    `hang()` stops forwarding without closing anything (a stopped or wedged server: the
    kernel still accepts connections and data, nothing answers); `resume()` forwards again."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        self._accept_thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._accept_thread.start()

    def sever(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if self._accept_thread is not None:
            self._accept_thread.join(5)
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()
        self._flowing.set()  # pumps waiting in a hang wake up and see their sockets closed

    close = sever

    def hang(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while True:
                self._flowing.wait()
                ready, _, _ = io_select.select([a, b], [], [], 0.2)
                for s in ready:
                    if not self._flowing.is_set():
                        break
                    data = s.recv(65536)
                    if not data:
                        return
                    peers[s].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()


def proxied(url: str, proxy: TcpProxy) -> str:
    """`url` with its host and port replaced by the proxy's."""
    return make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(False)


def upstream(url: str) -> tuple[str, int]:
    parsed = make_url(url)
    return parsed.host or "127.0.0.1", parsed.port or 5432


def count(engine: Engine, table: Table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


@dataclass
class LoadResult:
    user_id: int
    status: int
    exp_group: str | None
    request_id: str | None
    at: float = 0.0
    """time.monotonic() when the response (or the failure) arrived."""


class LoadLoop:
    """Concurrent GET /post/recommendations/ from `workers` threads until stopped, bounded by
    `max_requests` and `max_seconds`. Transport errors count as failures (status 0)."""

    def __init__(
        self,
        url: str,
        user_ids: list[int],
        workers: int = 4,
        max_requests: int = 20_000,
        max_seconds: float = 60.0,
    ) -> None:
        self.url = url
        self.user_ids = user_ids
        self.workers = workers
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.results: list[LoadResult] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, args=(i,), daemon=True) for i in range(workers)
        ]

    def __enter__(self) -> LoadLoop:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    @property
    def failures(self) -> list[LoadResult]:
        return [r for r in self.results if r.status != 200]

    @property
    def ok(self) -> list[LoadResult]:
        return [r for r in self.results if r.status == 200]

    def wait_for(self, n: int, timeout: float = 30.0) -> None:
        """Block until at least `n` more responses arrived (bounded)."""
        target = len(self.results) + n
        deadline = time.monotonic() + timeout
        while len(self.results) < target and time.monotonic() < deadline:
            time.sleep(0.01)

    def _work(self, worker: int) -> None:
        deadline = time.monotonic() + self.max_seconds
        i = worker
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                with self._lock:
                    if len(self.results) >= self.max_requests:
                        return
                uid = self.user_ids[i % len(self.user_ids)]
                i += self.workers
                try:
                    r = client.get("/post/recommendations/", params={"id": uid})
                    ok = r.status_code == 200
                    result = LoadResult(
                        uid,
                        r.status_code,
                        r.json()["exp_group"] if ok else None,
                        r.headers.get("X-Request-ID") if ok else None,
                    )
                except httpx.HTTPError:
                    result = LoadResult(uid, 0, None, None)
                result.at = time.monotonic()
                with self._lock:
                    self.results.append(result)
