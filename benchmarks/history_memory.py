"""Memory of the feed history: loading it, building the shared snapshot, gateway workers on it.

For each database given (demo worlds in PostgreSQL, e.g. `feedlab demo-data --posts 7000
--days 90 --users 1500` for ~0.5M events), in fresh processes:

- `History.from_engine` of the code before this design (`--before-rev`, rows materialised as
  Python objects, two sorted int64 copies) and of the current code (streamed chunks, one
  compact copy): peak RSS while loading and the bytes of the event arrays;
- co-visitation off the request path: the first request of a new day and reads during the
  refit (`refit_while_serving`);
- `feedlab snapshot build`: seconds and peak RSS;
- two gateway workers (`feedlab serve`, `popular` in both arms, one snapshot folder) started
  one after the other: start-up seconds, peak RSS while starting, and after start RSS, PSS
  (shared pages counted once over the processes mapping them) and private memory, from
  /proc/PID/status and /proc/PID/smaps_rollup;
- the same after REQUESTS recommendation requests to each (pages they touch count now);
- a "cold" worker on an empty snapshot folder (it builds the snapshot, then maps it): start-up
  seconds and peak RSS.

Then bytes per event and a line fitted over the sizes (MB = a + b * events). The measuring
functions (`proc_memory`, `start_worker`, `load_history`) are importable by other benchmarks.

    flock /work/heavy.lock .venv/bin/python benchmarks/history_memory.py \\
        postgresql+psycopg2://postgres@127.0.0.1:5432/world_05m ...
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from feedlab.processes import free_port, serve_subprocess  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from serving import POPULAR_CONFIG  # noqa: E402

BEFORE_REV = "6b11dc6"
"""The last commit whose History materialised rows and kept two int64 copies."""
MB = 2**20
REQUESTS = 2000
"""Requests sent to each worker before memory is measured again."""


@dataclass
class Memory:
    """MB of one process: peak RSS so far (VmHWM), RSS, PSS (shared pages divided among the
    processes mapping them) and private (its own pages only)."""

    peak_rss: float
    rss: float
    pss: float
    private: float


def proc_memory(pid: int) -> Memory:
    """`Memory` of process `pid` from /proc/PID/status and /proc/PID/smaps_rollup."""
    status = _kb_fields(Path(f"/proc/{pid}/status").read_text())
    rollup = _kb_fields(Path(f"/proc/{pid}/smaps_rollup").read_text())
    private = rollup["Private_Clean"] + rollup["Private_Dirty"]
    return Memory(
        status["VmHWM"] / 1024, status["VmRSS"] / 1024, rollup["Pss"] / 1024, private / 1024
    )


def _kb_fields(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            out[key.strip()] = int(parts[0])
    return out


LOADER = """
import json, sys, time
from pathlib import Path
from feedlab.storage.engine import make_engine

def peak_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

engine = make_engine(sys.argv[1])
old = sys.argv[2]
if old:
    import importlib.util
    spec = importlib.util.spec_from_file_location("history_before", old)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    History = module.History
else:
    from feedlab.models.history import History
import numpy, scipy.sparse  # imported before the baseline, as a server has them
base = peak_mb()
started = time.perf_counter()
h = History.from_engine(engine)
seconds = time.perf_counter() - started
if old:
    s = h._store
    arrays = [s.ts, s.u, s.p, s.like, s.u_ts, s.u_p, s.u_like, s.u_ptr, s.ckpt]
    nbytes = sum(a.nbytes for a in arrays)
else:
    nbytes = sum(h.memory().values())
print(json.dumps({"events": len(h), "seconds": seconds, "baseline_mb": base,
                  "peak_mb": peak_mb(), "array_mb": nbytes / 2**20}))
"""


def load_history(url: str, before: Path | None = None) -> dict:
    """`History.from_engine(url)` in a fresh process (of the file `before` when given):
    events, seconds, baseline and peak RSS MB, MB of the event arrays."""
    args = [sys.executable, "-c", LOADER, url, str(before or "")]
    out = subprocess.run(args, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.splitlines()[-1])


BUILDER = """
import json, sys, time
from pathlib import Path
from feedlab.gateway.snapshot import build, locked
from feedlab.storage.engine import make_engine
started = time.perf_counter()
with locked(Path(sys.argv[2])):
    path = build(make_engine(sys.argv[1]), Path(sys.argv[2]))
status = Path("/proc/self/status").read_text().splitlines()
peak = int([l for l in status if l.startswith("VmHWM")][0].split()[1]) / 1024
size = sum(f.stat().st_size for f in path.iterdir())
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "peak_mb": peak, "files_mb": size / 2**20}))
"""


def build_snapshot(url: str, folder: Path) -> dict:
    """Build the snapshot in a fresh process: seconds, peak RSS MB, MB of its files."""
    args = [sys.executable, "-c", BUILDER, url, str(folder)]
    out = subprocess.run(args, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.splitlines()[-1])


REFIT = """
import json, sys, time
from datetime import timedelta
import numpy as np
from feedlab.models.candidates import DailyCoVisitation
from feedlab.models.catalog import PostCatalog
from feedlab.models.history import History
from feedlab.models.ranker import RankerConfig
from feedlab.models.refit import midnight
from feedlab.storage.engine import make_engine

engine = make_engine(sys.argv[1])
history, catalog = History.from_engine(engine), PostCatalog.from_engine(engine)
day = midnight(history.time_range()[1])
daily = DailyCoVisitation(history, catalog.post_ids, RankerConfig().neighbours)
daily.background = True
started = time.perf_counter()
daily.at(day - timedelta(hours=1))  # the warm-up of a load: yesterday's fit, made in place
fit_s = time.perf_counter() - started
users = history.users.ids
rng = np.random.default_rng(0)

def request(at):
    user = int(rng.choice(users))
    _, posts, like = history.user_events_before(user, at)
    history.cumulative_counts(at)
    liked = catalog.index.lookup(posts[like][-10:])
    daily.at(at).scores(liked[liked >= 0])

at = day + timedelta(minutes=1)
started = time.perf_counter()
request(at)  # the first request of the new day
first_ms = (time.perf_counter() - started) * 1e3
pending = daily.pending(at)
during = []
while pending is not None and not pending.done():
    t = time.perf_counter()
    request(at)
    during.append((time.perf_counter() - t) * 1e3)
refit_s = time.perf_counter() - started
ready = daily.days()[-1] == day
print(json.dumps({"fit_s": fit_s, "first_ms": first_ms, "refit_s": refit_s, "ready": ready,
                  "requests": len(during), "p50_ms": float(np.percentile(during or [0], 50)),
                  "p99_ms": float(np.percentile(during or [0], 99)),
                  "max_ms": max(during or [0])}))
"""


def refit_while_serving(url: str) -> dict:
    """In a fresh process on the History of `url`: a co-visitation fit made in place (what a
    request on a new day used to wait for), then the first request of the next day (it gets
    yesterday's fit at once) and the latencies of request-like reads while the new day's fit
    runs on the refit thread."""
    args = [sys.executable, "-c", REFIT, url]
    out = subprocess.run(args, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.splitlines()[-1])


@contextmanager
def start_worker(
    url: str, workdir: Path, snapshot: Path, timeout: float = 1800
) -> Iterator[tuple[int, float, str]]:
    """A gateway worker (`feedlab serve`, `popular` arms) on `url` mapping `snapshot`:
    yields (pid, seconds until /health answered, its base URL); stopped on exit."""
    config = workdir / "experiments.yaml"
    config.write_text(POPULAR_CONFIG)
    port = free_port()
    env = {
        "FEEDLAB_DATABASE_URL": url,
        "FEEDLAB_EXPERIMENTS": str(config),
        "FEEDLAB_SNAPSHOT_PATH": str(snapshot),
    }
    spool = workdir / f"spool-{port}"
    args = ["serve", "--port", str(port), "--spool-dir", str(spool), "--no-watch"]
    args += ["--no-access-log", "--log-level", "warning"]
    started = time.perf_counter()
    with serve_subprocess(args, env, port, workdir / f"serve-{port}.log", timeout) as proc:
        yield proc.pid, time.perf_counter() - started, f"http://127.0.0.1:{port}"


def traffic(base: str, user_ids: list[int], n: int, seed: int = 0) -> None:
    """`n` recommendation requests for users drawn from `user_ids` (they read the users'
    events, so they touch the mapped pages a live worker touches)."""
    import httpx

    rng = np.random.default_rng(seed)
    with httpx.Client(base_url=base, timeout=30) as client:
        for uid in rng.choice(user_ids, n):
            client.get("/post/recommendations/", params={"id": int(uid)}).raise_for_status()


def feed_users(url: str) -> list[int]:
    from feedlab.storage.engine import make_engine
    from feedlab.storage.schema import feed
    from sqlalchemy import select

    engine = make_engine(url)
    with engine.connect() as conn:
        return list(conn.execute(select(feed.c.user_id).distinct()).scalars())


def measure(url: str, before: Path | None) -> dict:
    out: dict = {"url": url.rsplit("/", 1)[-1]}
    if before is not None:
        out["before"] = load_history(url, before)
    out["after"] = load_history(url)
    out["refit"] = refit_while_serving(url)
    with tempfile.TemporaryDirectory(prefix="history-memory-") as tmp:
        work = Path(tmp)
        snapshot = work / "snapshot"
        out["build"] = build_snapshot(url, snapshot)
        with (
            start_worker(url, work, snapshot) as (pid_a, start_a, url_a),
            start_worker(url, work, snapshot) as (pid_b, start_b, url_b),
        ):
            time.sleep(1)
            out["workers"] = [asdict(proc_memory(pid)) for pid in (pid_a, pid_b)]
            out["start_seconds"] = [start_a, start_b]
            user_ids = feed_users(url)
            for seed, base in enumerate((url_a, url_b)):
                traffic(base, user_ids, REQUESTS, seed)
            out["after_traffic"] = [asdict(proc_memory(pid)) for pid in (pid_a, pid_b)]
        shutil.rmtree(snapshot)
        with start_worker(url, work, snapshot) as (pid, seconds, _):  # no snapshot: builds one
            out["cold"] = {"seconds": seconds, **asdict(proc_memory(pid))}
    return out


def before_file(rev: str) -> Path | None:
    """models/history.py as of `rev`, written to a temporary file (None if unavailable)."""
    shown = subprocess.run(
        ["git", "show", f"{rev}:models/history.py"], capture_output=True, text=True, cwd=ROOT
    )
    if shown.returncode != 0:
        return None
    path = Path(tempfile.mkdtemp(prefix="history-before-")) / "history_before.py"
    path.write_text(shown.stdout)
    return path


def fitted(xs: list[float], ys: list[float]) -> str:
    """'a MB + b B/event' of a least-squares line through (events, MB)."""
    if len(xs) < 2:
        return "-"
    slope, intercept = np.polyfit(np.array(xs), np.array(ys), 1)
    return f"{intercept:.0f} MB + {slope * MB:.1f} B/event"


def report(results: list[dict]) -> None:
    print(f"load {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (uptime 1/5 min)")
    head = ["events", "before peak", "B/ev", "after peak", "B/ev", "arrays B/ev (before→after)"]
    print("History.from_engine (fresh process; peak RSS MB; B/event over the import baseline)")
    print(" | ".join(head))
    for r in results:
        a, b = r["after"], r.get("before")
        n = a["events"]
        cells = [f"{n:,}"]
        if b:
            cells += [f"{b['peak_mb']:.0f}", f"{(b['peak_mb'] - b['baseline_mb']) * MB / n:.0f}"]
        else:
            cells += ["-", "-"]
        cells += [f"{a['peak_mb']:.0f}", f"{(a['peak_mb'] - a['baseline_mb']) * MB / n:.0f}"]
        arrays = f"{b['array_mb'] * MB / n:.1f} → " if b else ""
        cells.append(f"{arrays}{a['array_mb'] * MB / n:.1f}")
        print(" | ".join(cells))
    print()
    print("snapshot build and two gateway workers (MB; start s)")
    columns = ["events", "build s", "build peak", "files", "start A/B s", "peak A/B"]
    print(" | ".join([*columns, "RSS A/B", "PSS A+B", "private A/B", "cold start s", "cold peak"]))
    for r in results:
        w, n = r["workers"], r["after"]["events"]
        print(
            f"{n:,} | {r['build']['seconds']:.1f} | {r['build']['peak_mb']:.0f} | "
            f"{r['build']['files_mb']:.0f} | "
            f"{r['start_seconds'][0]:.1f}/{r['start_seconds'][1]:.1f} | "
            f"{w[0]['peak_rss']:.0f}/{w[1]['peak_rss']:.0f} | "
            f"{w[0]['rss']:.0f}/{w[1]['rss']:.0f} | "
            f"{w[0]['pss'] + w[1]['pss']:.0f} | {w[0]['private']:.0f}/{w[1]['private']:.0f} | "
            f"{r['cold']['seconds']:.1f} | {r['cold']['peak_rss']:.0f}"
        )
    print()
    print(f"the two workers after {REQUESTS} requests each (MB)")
    print("events | RSS A/B | PSS A+B | private A/B")
    for r in results:
        w, n = r["after_traffic"], r["after"]["events"]
        print(
            f"{n:,} | {w[0]['rss']:.0f}/{w[1]['rss']:.0f} | {w[0]['pss'] + w[1]['pss']:.0f} | "
            f"{w[0]['private']:.0f}/{w[1]['private']:.0f}"
        )
    print()
    print("co-visitation refit of a new day (in-process reads: one user's events, post counts,")
    print("co-visitation scores) - fit in place s | first request of the day ms | refit s |")
    print("reads during it | p50 / p99 / max ms")
    for r in results:
        f = r["refit"]
        print(
            f"{r['after']['events']:,} | {f['fit_s']:.1f} | {f['first_ms']:.1f} | "
            f"{f['refit_s']:.1f} | {f['requests']} | "
            f"{f['p50_ms']:.2f} / {f['p99_ms']:.2f} / {f['max_ms']:.1f}"
        )
    xs = [r["after"]["events"] for r in results]
    print()
    if any("before" in r for r in results):
        print("fit, load peak before:", fitted(xs, [r["before"]["peak_mb"] for r in results]))
    print("fit, load peak after: ", fitted(xs, [r["after"]["peak_mb"] for r in results]))
    print("fit, worker peak:     ", fitted(xs, [r["workers"][0]["peak_rss"] for r in results]))
    print("fit, cold worker peak:", fitted(xs, [r["cold"]["peak_rss"] for r in results]))
    print("fit, worker RSS:      ", fitted(xs, [r["workers"][1]["rss"] for r in results]))
    print(
        "fit, PSS of two:      ", fitted(xs, [sum(w["pss"] for w in r["workers"]) for r in results])
    )
    print("fit, worker private:  ", fitted(xs, [r["workers"][1]["private"] for r in results]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("urls", nargs="+", help="Database URLs of worlds, smallest first.")
    parser.add_argument("--before-rev", default=BEFORE_REV, help="Git rev of the old loader.")
    parser.add_argument("--no-before", action="store_true", help="Skip the old loader.")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args()
    before = None if args.no_before else before_file(args.before_rev)
    results = [measure(url, before) for url in args.urls]
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    report(results)


if __name__ == "__main__":
    main()
