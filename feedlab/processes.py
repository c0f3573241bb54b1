"""Child `feedlab` processes on loopback: a free port, start and stop, wait for /health.

Used by `feedlab demo`, the serving benchmark and the end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_feedlab(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start `feedlab <args>` as a child process, its output appended to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "feedlab", *args],
            env={**os.environ, **env},
            stdout=out,
            stderr=out,
        )


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM (graceful: the gateway flushes its exposure log), then SIGKILL after 30 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def serve_subprocess(
    args: list[str], env: dict[str, str], port: int, log: Path, timeout: float = 60
) -> Iterator[subprocess.Popen]:
    """Run `feedlab <args>` as a child process and wait until its /health answers."""
    proc = start_feedlab(args, env, log)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, timeout, log)
        yield proc
    finally:
        stop_process(proc)


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} not healthy after {timeout}s:\n{log.read_text()}")
