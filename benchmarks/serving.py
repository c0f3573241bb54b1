"""Serving benchmark: latency, throughput, exposure completeness and memory of the gateway.

Builds a demo world (7,000 posts by default) in a temporary SQLite database, starts
`feedlab serve` on a free loopback port and drives it from a *separate* process with an
open-loop load generator: request i is sent at t0 + i/rate whatever the earlier ones are doing,
and its latency counts from that scheduled instant, so a stalled server shows up as latency
instead of silently lowering the offered load. Prints one row per rate, then a short ramp finds
the highest rate served with zero errors. Everything is bounded and stays on 127.0.0.1.

    .venv/bin/python benchmarks/serving.py                    # both arms `popular`
    .venv/bin/python benchmarks/serving.py --arms trained     # control + test artifacts
    .venv/bin/python benchmarks/serving.py --rates 50,200 --duration 10 --no-ramp
    .venv/bin/python benchmarks/serving.py --designs interleaving   # only the interleaved path

Each design (`--designs`, default both) gets its own gateway on the same world: `ab` routes each
user to one arm; `interleaving` asks both arms per request and merges their lists.
    .venv/bin/python benchmarks/serving.py --rates 200 --no-ramp --durability async,sync

With several `--durability` modes the gateway is restarted in each (same world, same rates)
and a last table gives what `sync` (exposures fsynced to the local journal before each
response) costs over `async` in p50 and p99.

    .venv/bin/python benchmarks/serving.py --vs-trivial --connections 32 --duration 20

`--vs-trivial` measures the serving path itself instead: closed loop (each of `--connections`
keep-alive connections sends its next request as soon as the last one is answered), first
against a trivial FastAPI endpoint (same URL and query, constant answer) served by the same
uvicorn settings as `feedlab serve`, then against one gateway worker, in the same run. It
prints both rates, their ratio and the server's CPU per response.

    .venv/bin/python benchmarks/serving.py --rates 200 --no-ramp --redis

`--redis [URL]` runs every mode twice, without and with the online state in Redis
(`FEEDLAB_REDIS_URL`, default redis://127.0.0.1:6379/0, under a key prefix of this run, removed
afterwards), and a last table gives what Redis adds to p50 and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from feedlab.storage.engine import make_engine  # noqa: E402
from feedlab.storage.schema import exposures, posts, users  # noqa: E402

from feedlab.demo import feedlab_cmd, run_step, serve_args, train_cmd  # noqa: E402
from feedlab.processes import free_port, serve_subprocess, stop_process, wait_healthy  # noqa: E402

CONNECTIONS = 64
WARMUP_S = 2.0
"""Closed loop: the first seconds (imports, caches, JIT-less warm-up) are not counted."""
GRACE_S = 10.0
"""A request still unanswered this long after its phase ends is an error."""
POPULAR_CONFIG = """\
default_model: popular
experiments:
  - name: serving_bench
    status: running
    salt: serving-bench
    traffic: 100
    arms:
      - {name: control, model: popular, weight: 50}
      - {name: test, model: popular, weight: 50}
"""
TRAINED_CONFIG = """\
default_model: control
experiments:
  - name: serving_bench
    status: running
    salt: serving-bench
    traffic: 100
    arms:
      - {name: control, model: control, weight: 50}
      - {name: test, model: test, weight: 50}
models:
  control: {backend: inprocess, artifact: "%(artifacts)s/control"}
  test: {backend: inprocess, artifact: "%(artifacts)s/test"}
"""


@dataclass
class PhaseResult:
    rate: float
    sent: int
    ok: int
    errors: int
    elapsed_s: float
    latencies_ms: list[float]
    cpu_s: float | None = None
    """Closed loop: the server's CPU seconds over the counted part (warm-up excluded)."""
    warmup_ok: int = 0
    """Closed loop: answers during the warm-up (they are logged as exposures too)."""

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (the gateway's workers), from /proc (no psutil)."""
    pids = [pid]
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                pids += process_tree(int(child))
    except FileNotFoundError:  # exited meanwhile
        pass
    return pids


def _tree_files(pid: int, name: str) -> list[str]:
    """/proc/<p>/<name> of every process in the tree still running."""
    texts = []
    for p in process_tree(pid):
        try:
            texts.append(Path(f"/proc/{p}/{name}").read_text())
        except FileNotFoundError:  # exited meanwhile
            continue
    return texts


def rss_mb(pid: int) -> float:
    """Resident memory of the gateway's process tree, MB."""
    lines = (line for text in _tree_files(pid, "status") for line in text.splitlines())
    return sum(int(line.split()[1]) for line in lines if line.startswith("VmRSS:")) / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by the gateway's process tree."""
    stats = (text.rsplit(")", 1)[1].split() for text in _tree_files(pid, "stat"))
    ticks = sum(int(f[11]) + int(f[12]) for f in stats)  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def interleaved(config_text: str) -> str:
    """The same experiment with `design: interleaving` (no weights needed, equal ones allowed)."""
    return config_text.replace("    traffic: 100\n", "    traffic: 100\n    design: interleaving\n")


def prepare(args: argparse.Namespace, workdir: Path) -> tuple[dict[str, str], Path]:
    """Demo world + (optionally) trained arms + the A/B experiments file; returns env and
    config."""
    env = {**os.environ, "FEEDLAB_DATABASE_URL": args.db_url or f"sqlite:///{workdir}/bench.db"}
    env.setdefault("HF_HUB_OFFLINE", "1")
    if not args.db_url:
        spec = workdir / "demo_world.json"
        world = feedlab_cmd("demo-data", "--posts", str(args.posts), "--spec-out", str(spec))
        run_step(f"demo world with {args.posts} posts", world, env)
    config = workdir / "experiments.yaml"
    if args.arms == "trained":
        artifacts = Path(args.artifacts) if args.artifacts else workdir / "artifacts"
        if not args.artifacts:
            for arm in ("control", "test"):
                run_step(f"train {arm}", train_cmd(arm, artifacts / arm), env)
        config.write_text(TRAINED_CONFIG % {"artifacts": artifacts.resolve()})
    else:
        config.write_text(POPULAR_CONFIG)
    return env, config


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str) -> bytes:
    """One keep-alive HTTP/1.1 GET; returns the body of a 200 (raises on anything else).

    A minimal client on purpose: httpx's async pool spends milliseconds of CPU per request once
    hundreds are pending, which would make the load generator, not the gateway, the bottleneck.
    """
    writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length)
    if status != 200:
        raise ValueError(f"HTTP {status}")
    return body


async def _drive(url: str, rate: float, duration: float, user_ids: list[int], limit: int) -> dict:
    """Open-loop load: request i is due at t0 + i/rate; `CONNECTIONS` keep-alive connections
    take due requests in order, and latency counts from the due instant (so queueing behind a
    slow server is measured, not hidden)."""
    rng = random.Random(int(rate))
    total = int(rate * duration)
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[tuple[float, int] | None] = asyncio.Queue()
    t0 = time.perf_counter() + 0.2

    async def produce() -> None:
        for i in range(total):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait((due, rng.choice(user_ids)))
        for _ in range(CONNECTIONS):
            queue.put_nowait(None)

    async def connection() -> None:
        nonlocal errors
        reader = writer = None
        while (item := await queue.get()) is not None:
            due, user_id = item
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, int(port))
                body = await _get(
                    reader, writer, f"/post/recommendations/?id={user_id}&limit={limit}"
                )
                if b'"exp_group"' not in body:
                    raise ValueError("no exp_group")
                latencies.append((time.perf_counter() - due) * 1000)
            except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                errors += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(CONNECTIONS)]
    producer = asyncio.create_task(produce())
    _, pending = await asyncio.wait([producer, *workers], timeout=duration + GRACE_S)
    unanswered = total - len(latencies) - errors
    for task in pending:  # still busy well after the phase: the rest counts as errors
        task.cancel()
    elapsed = time.perf_counter() - t0
    return {
        "sent": total,
        "ok": len(latencies),
        "errors": errors + max(unanswered, 0),
        "elapsed_s": elapsed,
        "latencies_ms": latencies,
    }


async def _closed(
    url: str, pid: int, connections: int, duration: float, user_ids: list[int], limit: int
) -> dict:
    """Closed loop: each connection sends its next request as soon as the last is answered,
    for `WARMUP_S` (not counted) then `duration` seconds; latency counts from the send. The
    server's (`pid`) CPU time is read when counting starts and once every answer is in."""
    rng = random.Random(connections)
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    latencies: list[float] = []
    errors = warmup_ok = 0
    start = time.perf_counter() + WARMUP_S
    end = start + duration

    async def connection() -> None:
        nonlocal errors, warmup_ok
        reader, writer = await asyncio.open_connection(host, int(port))
        while (sent := time.perf_counter()) < end:
            target = f"/post/recommendations/?id={rng.choice(user_ids)}&limit={limit}"
            try:
                body = await _get(reader, writer, target)
                if b'"exp_group"' not in body:
                    raise ValueError("no exp_group")
            except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                if sent >= start:
                    errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, int(port))
                continue
            if sent >= start:
                latencies.append((time.perf_counter() - sent) * 1000)
            else:
                warmup_ok += 1
        writer.close()

    async def cpu_at_start() -> float:
        await asyncio.sleep(start - time.perf_counter())
        return cpu_seconds(pid)

    cpu0, *_ = await asyncio.wait_for(
        asyncio.gather(cpu_at_start(), *(connection() for _ in range(connections))),
        WARMUP_S + duration + GRACE_S,
    )
    return {
        "cpu_s": cpu_seconds(pid) - cpu0,
        "warmup_ok": warmup_ok,
        "sent": len(latencies) + errors,
        "ok": len(latencies),
        "errors": errors,
        "elapsed_s": time.perf_counter() - start,
        "latencies_ms": latencies,
    }


def loadgen_main(args: argparse.Namespace) -> None:
    """Child process entry: drive one phase and print its raw result as JSON."""
    user_ids = json.loads(Path(args.users_file).read_text())
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if args.rate:
        result = asyncio.run(_drive(args.url, args.rate, args.duration, user_ids, args.limit))
    else:
        result = asyncio.run(
            _closed(
                args.url, args.server_pid, args.connections, args.duration, user_ids, args.limit
            )
        )
    print(json.dumps(result))


def trivial_main(port: int) -> None:
    """Child process entry: the reference endpoint, served as `feedlab serve` serves the
    gateway (one process, `uvicorn.run` defaults, no access log)."""
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/post/recommendations/")
    async def trivial(id: int, limit: int = 5) -> dict[str, object]:
        return {"exp_group": "trivial", "recommendations": []}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="info", access_log=False)


def run_phase(
    url: str,
    pid: int,
    rate: float,
    duration: float,
    users_file: Path,
    limit: int,
    connections: int = 0,
) -> PhaseResult:
    """One phase driven from a child process: open loop at `rate`, or closed loop over
    `connections` when `rate` is 0."""
    cmd = [
        sys.executable,
        __file__,
        "--loadgen",
        "--url",
        url,
        "--server-pid",
        str(pid),
        "--rate",
        str(rate),
        "--connections",
        str(connections),
        "--duration",
        str(duration),
        "--users-file",
        str(users_file),
        "--limit",
        str(limit),
    ]
    timeout = WARMUP_S + duration + 120
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=timeout)
    raw = json.loads(out.stdout.strip().splitlines()[-1])
    return PhaseResult(rate=rate, **raw)


def count_exposures(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(exposures)).scalar_one()


def settled_exposures(engine, expected: int, wait_s: float = 15.0) -> int:
    """Exposures are written asynchronously: wait (bounded) until the count stops rising."""
    deadline = time.monotonic() + wait_s
    last = -1
    while time.monotonic() < deadline:
        n = count_exposures(engine)
        if n >= expected or n == last:
            return n
        last = n
        time.sleep(1.0)
    return count_exposures(engine)


class RssSampler:
    """Peak RSS of the gateway process while a phase runs (sampled every 0.5 s)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.peak = 0.0

    def sample(self) -> None:
        self.peak = max(self.peak, rss_mb(self.pid))


def measure(
    url: str,
    pid: int,
    engine,
    rate: float,
    duration: float,
    users_file: Path,
    limit: int,
    connections: int = 0,
) -> tuple[PhaseResult, int, float, float]:
    """Drive one phase; returns its result, the exposures it wrote (None: no `engine`), the
    peak RSS and the server's CPU ms per response (a closed loop's warm-up excluded)."""
    before = count_exposures(engine) if engine is not None else 0
    cpu_before = cpu_seconds(pid)
    sampler = RssSampler(pid)
    cmd_done: list[PhaseResult] = []

    def drive() -> None:
        cmd_done.append(run_phase(url, pid, rate, duration, users_file, limit, connections))

    thread = threading.Thread(target=drive)
    thread.start()
    while thread.is_alive():
        sampler.sample()
        thread.join(0.5)
    result = cmd_done[0]
    cpu_s = result.cpu_s if result.cpu_s is not None else cpu_seconds(pid) - cpu_before
    cpu_ms = cpu_s * 1000 / max(result.ok, 1)
    if engine is None:
        return result, -1, sampler.peak, cpu_ms
    answered = result.ok + result.warmup_ok
    written = settled_exposures(engine, before + answered) - before
    return result, written, sampler.peak, cpu_ms


def row(
    result: PhaseResult, written: int, peak_rss: float, cpu_ms: float, rate: float | None = None
) -> str:
    """One table line; `rate` replaces the first column (a closed loop's connections)."""
    achieved = result.ok / result.elapsed_s if result.elapsed_s else 0.0
    first = result.rate if rate is None else rate
    return (
        f"{first:>8.0f} {achieved:>9.1f} {result.percentile(0.50):>8.1f} "
        f"{result.percentile(0.95):>8.1f} {result.percentile(0.99):>8.1f} {result.errors:>7d} "
        f"{written if written >= 0 else '-':>7}/{result.ok + result.warmup_ok:<7d} "
        f"{peak_rss:>8.0f} {cpu_ms:>11.2f}"
    )


HEADER = (
    f"{'rate/s':>8} {'achieved':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>7} "
    f"{'exposures/responses':>15} {'RSS MB':>8} {'CPU ms/resp':>11}"
)


def sustainable(result: PhaseResult, p99_limit_ms: float) -> bool:
    achieved = result.ok / result.elapsed_s if result.elapsed_s else 0.0
    return (
        result.errors == 0
        and achieved >= 0.95 * result.rate
        and result.percentile(0.99) <= p99_limit_ms
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rates", default="50,200,500", help="comma-separated req/s")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per rate")
    parser.add_argument("--posts", type=int, default=7000)
    parser.add_argument("--arms", choices=["popular", "trained"], default="popular")
    parser.add_argument("--artifacts", help="existing artifacts dir (control/, test/) to reuse")
    parser.add_argument("--db-url", help="existing populated database instead of a new world")
    parser.add_argument("--limit", type=int, default=5, help="posts per request")
    parser.add_argument(
        "--workers", type=int, default=2, help="gateway processes (`feedlab serve --workers`)"
    )
    parser.add_argument(
        "--designs", default="ab,interleaving", help="comma-separated: ab, interleaving"
    )
    parser.add_argument(
        "--durability",
        default="async",
        help="comma-separated exposure log modes to run in turn: async, sync",
    )
    parser.add_argument(
        "--redis",
        nargs="?",
        const="redis://127.0.0.1:6379/0",
        help="also run with the online state in this Redis (FEEDLAB_REDIS_URL)",
    )
    parser.add_argument("--no-ramp", action="store_true")
    parser.add_argument("--ramp-start", type=float, default=250.0)
    parser.add_argument("--ramp-max", type=float, default=2000.0)
    parser.add_argument("--ramp-duration", type=float, default=8.0)
    parser.add_argument(
        "--ramp-p99-ms",
        type=float,
        default=500.0,
        help="a ramp step with p99 above this is not sustainable",
    )
    parser.add_argument(
        "--vs-trivial",
        action="store_true",
        help="closed loop: a trivial FastAPI endpoint, then one gateway worker (see above)",
    )
    parser.add_argument(
        "--connections", type=int, default=32, help="--vs-trivial: concurrent connections"
    )
    parser.add_argument("--loadgen", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--trivial-server", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--users-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loadgen:
        loadgen_main(args)
        return
    if args.trivial_server:
        trivial_main(args.trivial_server)
        return

    with tempfile.TemporaryDirectory(prefix="feedlab-bench-") as tmp:
        workdir = Path(tmp)
        env, config = prepare(args, workdir)
        engine = make_engine(env["FEEDLAB_DATABASE_URL"])
        with engine.connect() as conn:
            user_ids = [int(u) for u in conn.execute(select(users.c.user_id)).scalars()]
            args.posts = conn.execute(select(func.count()).select_from(posts)).scalar_one()
        users_file = workdir / "users.json"
        users_file.write_text(json.dumps(user_ids or [1]))
        if args.vs_trivial:
            vs_trivial(args, env, config, engine, workdir, users_file)
            engine.dispose()
            return
        configs = {"ab": config, "interleaving": workdir / "experiments.interleaving.yaml"}
        configs["interleaving"].write_text(interleaved(config.read_text()))
        prefix = f"feedlab-bench-{os.getpid()}:"
        onlines: dict[str, dict[str, str]] = {"local": {}}
        if args.redis:
            onlines["redis"] = {"FEEDLAB_REDIS_URL": args.redis, "FEEDLAB_REDIS_PREFIX": prefix}
        for design in args.designs.split(","):
            runs: dict[tuple[str, str], list[PhaseResult]] = {}
            for mode in args.durability.split(","):
                for online, online_env in onlines.items():
                    port = free_port()
                    spool = workdir / f"spool-{design}-{mode}-{online}"
                    serve = serve_args(configs[design], port, spool)
                    args_serve = [*serve, "--workers", str(args.workers)]
                    mode_env = {**env, "FEEDLAB_EXPOSURE_DURABILITY": mode, **online_env}
                    log = workdir / f"gateway-{design}-{mode}-{online}.log"
                    with serve_subprocess(args_serve, mode_env, port, log, timeout=300) as gw:
                        print(f"\nexposure durability: {mode}, online state: {online}")
                        url = f"http://127.0.0.1:{port}"
                        runs[mode, online] = report(
                            args, design, url, gw.pid, engine, users_file, user_ids
                        )
            for online in onlines:
                if ("async", online) in runs and ("sync", online) in runs:
                    print(f"\ncost of sync durability (sync minus async, ms), {online}")
                    print_cost(runs["async", online], runs["sync", online], "async", "sync")
            for mode in args.durability.split(","):
                if (mode, "redis") in runs:
                    print(f"\ncost of Redis (redis minus local, ms), {mode}")
                    print_cost(runs[mode, "local"], runs[mode, "redis"], "local", "redis")
        if args.redis:
            import redis

            client = redis.Redis.from_url(args.redis)
            keys = list(client.scan_iter(f"{prefix}*"))
            if keys:
                client.delete(*keys)
        engine.dispose()


def vs_trivial(
    args: argparse.Namespace,
    env: dict[str, str],
    config: Path,
    engine,
    workdir: Path,
    users_file: Path,
) -> None:
    """The closed-loop table: the trivial endpoint, then one gateway worker, and their ratio."""
    print(
        f"\nclosed loop, {args.connections} connections, {args.duration:.0f} s each after "
        f"{WARMUP_S:.0f} s warm-up; load before: {os.getloadavg()[0]:.2f}"
    )
    print(f"{'server':<10} {HEADER.replace('rate/s', 'conns.')}")
    rates = {}
    port = free_port()
    trivial = [sys.executable, __file__, "--trivial-server", str(port)]
    log = workdir / "trivial.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(trivial, env=env, stdout=out, stderr=out)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, 60, log)
        url = f"http://127.0.0.1:{port}"
        result = measure(
            url, proc.pid, None, 0, args.duration, users_file, args.limit, args.connections
        )
    finally:
        stop_process(proc)
    rates["trivial"] = result[0].ok / result[0].elapsed_s
    print(f"{'trivial':<10} {row(*result, rate=args.connections)}", flush=True)
    port = free_port()
    serve = [*serve_args(config, port, workdir / "spool-closed"), "--workers", "1"]
    with serve_subprocess(serve, env, port, workdir / "gateway-closed.log", timeout=300) as gw:
        url = f"http://127.0.0.1:{port}"
        result = measure(
            url, gw.pid, engine, 0, args.duration, users_file, args.limit, args.connections
        )
    rates["feedlab"] = result[0].ok / result[0].elapsed_s
    print(f"{'feedlab':<10} {row(*result, rate=args.connections)}", flush=True)
    print(
        f"\nfeedlab / trivial throughput: {rates['feedlab'] / rates['trivial']:.0%} "
        f"(arms={args.arms}, exposure durability "
        f"{env.get('FEEDLAB_EXPOSURE_DURABILITY', 'async')}); "
        f"load after: {os.getloadavg()[0]:.2f}"
    )


def print_cost(base: list[PhaseResult], other: list[PhaseResult], a: str, b: str) -> None:
    """What run `b` adds to the latency of run `a`, rate by rate."""
    print(
        f"{'rate/s':>8} {'p50 ' + a:>10} {'p50 ' + b:>10} {'+p50':>7} "
        f"{'p99 ' + a:>10} {'p99 ' + b:>10} {'+p99':>7}"
    )
    for x, y in zip(base, other, strict=True):
        p50a, p50b, p99a, p99b = (
            x.percentile(0.5),
            y.percentile(0.5),
            x.percentile(0.99),
            y.percentile(0.99),
        )
        print(
            f"{x.rate:>8.0f} {p50a:>10.1f} {p50b:>10.1f} {p50b - p50a:>+7.1f} "
            f"{p99a:>10.1f} {p99b:>10.1f} {p99b - p99a:>+7.1f}"
        )


def report(
    args: argparse.Namespace,
    design: str,
    url: str,
    pid: int,
    engine,
    users_file: Path,
    user_ids: list[int],
) -> list[PhaseResult]:
    """The fixed-rate table, then the ramp to the highest clean rate; returns the fixed-rate
    results."""
    print(
        f"\n== design {design}: gateway pid {pid} on {url}: arms={args.arms}, "
        f"{args.workers} worker(s), "
        f"{args.posts} posts, {len(user_ids)} users, idle RSS {rss_mb(pid):.0f} MB"
    )
    print(f"\nfixed rates, {args.duration:.0f} s each (latency from scheduled send time)")
    print(HEADER)
    fixed = []
    for rate in (float(r) for r in args.rates.split(",")):
        result = measure(url, pid, engine, rate, args.duration, users_file, args.limit)
        print(row(*result), flush=True)
        fixed.append(result[0])
    if args.no_ramp:
        return fixed
    print(
        f"\nramp: {args.ramp_duration:.0f} s steps, x1.5, until errors, "
        f"<95% achieved or p99 > {args.ramp_p99_ms:.0f} ms"
    )
    print(HEADER)
    best, rate = 0.0, args.ramp_start
    while rate <= args.ramp_max:
        result, written, peak, cpu_ms = measure(
            url, pid, engine, rate, args.ramp_duration, users_file, args.limit
        )
        print(row(result, written, peak, cpu_ms), flush=True)
        if not sustainable(result, args.ramp_p99_ms):
            break
        best, rate = rate, rate * 1.5
    print(f"\nhighest sustainable rate with zero errors: {best:.0f} req/s")
    return fixed


if __name__ == "__main__":
    main()
