"""Serve and train at growing world sizes, up to the real one (163k users, 7k posts, ~77M events).

Per size (a target number of feed events; users = events / events per user at `--days` days,
posts fixed) it builds a demo world in its own PostgreSQL database with
`feedlab demo-data --chunk-users` (streamed, so the builder's memory stays flat), then measures
as child processes, each timed and its peak RSS read from the kernel (wait4):

- `feedlab train control` and `feedlab train test`: peak RSS, wall, CPU, labelled rows;
- `feedlab snapshot build` when the command exists (else "n/a");
- the gateway with both trained arms, one worker: peak RSS while starting (VmHWM), RSS and PSS
  after start (/proc/PID/smaps_rollup), start-up time, and the latency of the first request of
  a new day; then two workers: their PSS summed (shared pages count once).

Prints one table, sizes as columns, and the machine's load. Databases are named
`feedlab_scale_<size>`; `--reuse` keeps an existing one (built by an earlier run with `--keep`)
instead of rebuilding it, and without `--keep` each size's database is dropped when measured.

    .venv/bin/python benchmarks/scale.py                      # 0.5M and 2M events, ~20 min
    .venv/bin/python benchmarks/scale.py --sizes 0.5M,2M,8M,77M --keep   # the full table, hours
    .venv/bin/python benchmarks/scale.py --sizes 77M --reuse --keep      # a kept 77M world again

The 77M world takes about 12 GB in PostgreSQL and ~20 min to build (measured: 8.9M events,
1.4 GB, in 102 s); one size per run keeps each run short.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from feedlab.storage.schema import feed  # noqa: E402

from feedlab.demo import feedlab_cmd, serve_args, write_config  # noqa: E402
from feedlab.processes import free_port, start_feedlab, stop_process, wait_healthy  # noqa: E402

ADMIN_URL = os.environ.get(
    "FEEDLAB_BENCH_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
EVENTS_PER_USER_DAY = 3.55
"""Stored events (views after the once-per-post rule, plus likes) per user and day of a demo
world with 7,000 posts: measured, 469k events for 1,100 users over 120 days."""
REAL_USERS = 163_205


@dataclass
class Run:
    """What the kernel says about one finished child process."""

    wall_s: float
    cpu_s: float
    peak_mb: float
    output: str


@dataclass
class Column:
    """The figures of one size, by row name (missing: n/a)."""

    label: str
    values: dict[str, str] = field(default_factory=dict)


def parse_size(size: str) -> int:
    """'0.5M' -> 500000, '20k' -> 20000, '77000000' -> 77000000."""
    units = {"k": 1_000, "m": 1_000_000}
    raw = size.strip().lower().replace("_", "")
    scale = units.get(raw[-1:], 1)
    number = raw[:-1] if raw[-1:] in units else raw
    try:
        events = round(float(number) * scale)
    except ValueError:
        raise SystemExit(f"--sizes: {size!r} is not a number of events like 0.5M or 20k") from None
    if events <= 0:
        raise SystemExit(f"--sizes: {size!r} must be positive")
    return events


def world_users(events: int, days: int) -> int:
    """Users that give about `events` events over `days` days (at most the real network's)."""
    return max(10, min(REAL_USERS, round(events / (EVENTS_PER_USER_DAY * days))))


def run_measured(cmd: list[str], env: dict[str, str], log: Path) -> Run:
    """Run `cmd` to the end (output appended to `log`); wall, CPU and peak RSS from wait4."""
    started = time.perf_counter()
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    tail = log.read_text(errors="replace")[-3000:]
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[3:])} failed ({proc.returncode}):\n{tail}")
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, tail)


def proc_kb(pid: int, name: str, key: str) -> float:
    """A `key:  N kB` line of /proc/PID/<name> (status, smaps_rollup), in kB."""
    for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return float(line.split()[1])
    raise KeyError(f"/proc/{pid}/{name} has no {key}")


def children(pid: int) -> list[int]:
    """The direct children of `pid` (uvicorn's workers under its supervisor)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


@contextlib.contextmanager
def database(events: int, reuse: bool, keep: bool) -> Iterator[tuple[str, bool]]:
    """(URL, whether it already holds a world) of the size's database; dropped after unless
    `keep`."""
    name = f"feedlab_scale_{events}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
        ).first()
        if exists and not reuse:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        if not exists or not reuse:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url, bool(exists and reuse)
    finally:
        if not keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def stored_events(url: str) -> tuple[int, int, datetime]:
    """(events, users with events, last event time) of the world in `url`."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            query = select(func.count(), func.count(func.distinct(feed.c.user_id)))
            n, users = conn.execute(query.select_from(feed)).one()
            last = conn.execute(select(func.max(feed.c.timestamp))).scalar_one()
    finally:
        engine.dispose()
    return int(n), int(users), last


def has_command(*args: str) -> bool:
    """Whether `feedlab <args> --help` exists in this feedlab."""
    found = subprocess.run(feedlab_cmd(*args, "--help"), capture_output=True, env=os.environ)
    return found.returncode == 0


def mb(kb: float) -> str:
    return f"{kb / 1024:,.0f} MB"


def measure_gateway(
    env: dict[str, str], config: Path, spool: Path, workers: int, day_after: datetime, user: int
) -> dict[str, str]:
    """Start the gateway with `workers` workers until /health answers and read its memory;
    with one worker also the first request of the day after the history."""
    port = free_port()
    log = spool.parent / f"gateway_{spool.name}_{workers}.log"
    args = [*serve_args(config, port, spool), "--no-watch"]
    args += ["--workers", str(workers)]
    started = time.perf_counter()
    proc = start_feedlab(args, env, log)
    out: dict[str, str] = {}
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, 3600, log)
        ready = time.perf_counter() - started
        if workers == 1:
            out["gateway start-up"] = f"{ready:.1f} s"
            out["worker peak RSS while starting"] = mb(proc_kb(proc.pid, "status", "VmHWM"))
            out["worker RSS after start"] = mb(proc_kb(proc.pid, "smaps_rollup", "Rss"))
            out["worker PSS after start"] = mb(proc_kb(proc.pid, "smaps_rollup", "Pss"))
            url = f"http://127.0.0.1:{port}/post/recommendations/"
            params = {"id": user, "time": day_after.isoformat(), "limit": 5}
            with httpx.Client(timeout=3600) as http:
                for name in ("first request of a new day", "second request that day"):
                    sent = time.perf_counter()
                    http.get(url, params=params).raise_for_status()
                    out[name] = f"{(time.perf_counter() - sent) * 1000:,.0f} ms"
                    params["time"] = (day_after + timedelta(seconds=1)).isoformat()
        else:
            pids = children(proc.pid)
            out["2 workers: start-up"] = f"{ready:.1f} s"
            out["2 workers: PSS summed"] = mb(sum(proc_kb(p, "smaps_rollup", "Pss") for p in pids))
            out["2 workers: RSS summed"] = mb(sum(proc_kb(p, "smaps_rollup", "Rss") for p in pids))
    finally:
        stop_process(proc)
    return out


def measure_size(events: int, args: argparse.Namespace, work: Path) -> Column:
    """Every figure of one size (builds or reuses its world)."""
    users = world_users(events, args.days)
    column = Column(f"{events / 1e6:g}M")
    with database(events, args.reuse, args.keep) as (url, reused):
        env = {
            **os.environ,
            "FEEDLAB_DATABASE_URL": url,
            "HF_HUB_OFFLINE": "1",
        }
        log = work / "commands.log"
        if not reused:
            build = feedlab_cmd(
                "demo-data",
                *("--users", str(users), "--posts", str(args.posts), "--days", str(args.days)),
                *("--chunk-users", str(args.chunk_users), "--url", url),
                *("--spec-out", str(work / f"world_{events}.json")),
            )
            run = run_measured(build, env, log)
            column.values["world build (demo-data)"] = f"{run.wall_s:.0f} s"
            column.values["world build peak RSS"] = mb(run.peak_mb * 1024)
        n, with_events, last = stored_events(url)
        column.values["events (users)"] = f"{n / 1e6:.2f}M ({with_events:,})"
        artifacts = work / f"artifacts_{events}"
        spool = work / f"spool_{events}"  # the gateways' (and their snapshot's) folder
        for arm in ("control", "test"):
            cmd = feedlab_cmd("train", arm, "--out", str(artifacts / arm), "--url", url)
            if args.iterations:
                cmd += ["--iterations", str(args.iterations)]
            run = run_measured(cmd, env, log)
            rows = json.loads((artifacts / arm / "meta.json").read_text())["training_data"]["rows"]
            column.values[f"train {arm}: peak RSS"] = mb(run.peak_mb * 1024)
            column.values[f"train {arm}: wall / CPU"] = f"{run.wall_s:.0f} s / {run.cpu_s:.0f} s"
            column.values[f"train {arm}: rows"] = f"{rows:,}"
        if has_command("snapshot", "build"):
            snapshot = feedlab_cmd("snapshot", "build", "--spool-dir", str(spool))
            run = run_measured(snapshot, env, log)
            column.values["snapshot build"] = f"{run.wall_s:.0f} s, {mb(run.peak_mb * 1024)}"
        config = write_config(work / f"experiments_{events}.yaml", artifacts)
        day_after = datetime(last.year, last.month, last.day) + timedelta(days=1, minutes=1)
        for workers in (1, 2):
            column.values.update(measure_gateway(env, config, spool, workers, day_after, 1))
    return column


ROWS = (
    "events (users)",
    "world build (demo-data)",
    "world build peak RSS",
    "train control: peak RSS",
    "train control: wall / CPU",
    "train control: rows",
    "train test: peak RSS",
    "train test: wall / CPU",
    "train test: rows",
    "snapshot build",
    "gateway start-up",
    "worker peak RSS while starting",
    "worker RSS after start",
    "worker PSS after start",
    "first request of a new day",
    "second request that day",
    "2 workers: start-up",
    "2 workers: RSS summed",
    "2 workers: PSS summed",
)


def table(columns: list[Column]) -> str:
    """One row per figure, one column per size; a figure not measured reads n/a."""
    width = max(len(r) for r in ROWS)
    cells = [[c.values.get(r, "n/a") for c in columns] for r in ROWS]
    widths = [max(len(c.label), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    labels = [c.label for c in columns]

    def line(name: str, values: list[str]) -> str:
        padded = (v.rjust(w) for v, w in zip(values, widths, strict=True))
        return " | ".join([f"{name:<{width}}", *padded])

    head = line("size", labels)
    body = [line(name, row) for name, row in zip(ROWS, cells, strict=True)]
    return "\n".join([head, "-" * len(head), *body])


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0.5M,2M", help="Events per world, e.g. 0.5M,2M,8M,77M")
    parser.add_argument("--posts", type=int, default=7000)
    parser.add_argument("--days", type=int, default=133, help="Days of history (133: ~77M events)")
    parser.add_argument("--chunk-users", type=int, default=5000)
    parser.add_argument("--iterations", type=int, help="Max CatBoost trees (default: the arm's)")
    parser.add_argument("--reuse", action="store_true", help="Reuse a kept world of a size")
    parser.add_argument("--keep", action="store_true", help="Keep the databases")
    parser.add_argument("--workdir", type=Path, help="Artifacts and logs (default: a temp dir)")
    args = parser.parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    with contextlib.ExitStack() as stack:
        work = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        work.mkdir(parents=True, exist_ok=True)
        columns = []
        for events in sizes:
            print(f"== {events:,} events", flush=True)
            columns.append(measure_size(events, args, work))
        load = Path("/proc/loadavg").read_text().split()[:3]
        report = f"{table(columns)}\n(load average {' '.join(load)}, {os.cpu_count()} cores)"
    print(report, flush=True)
    return report


if __name__ == "__main__":
    main()
