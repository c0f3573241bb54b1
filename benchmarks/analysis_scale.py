"""Time `feedlab analyze` over 10 million exposures in PostgreSQL (budget: 60 s).

Creates a dedicated database, generates the data with generate_series in SQL (exposures,
one exposure_items row per served post, likes and views in feed, a pre-period for CUPED;
a few minutes), runs the analysis once and prints a table of step timings; drops the
database at the end unless --keep, and --reuse NAME times the analysis again on a kept one.

    .venv/bin/python benchmarks/analysis_scale.py [--exposures 10000000] [--users 250000]
    .venv/bin/python benchmarks/analysis_scale.py --keep        # prints the database name
    .venv/bin/python benchmarks/analysis_scale.py --reuse feedlab_bench_xxxxxxxx
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from feedlab.analysis.online.analyze import Options, analyze
from feedlab.storage.engine import make_engine, upgrade

from tests.support.synthetic import config_yaml, store_config

ADMIN_URL = os.environ.get(
    "FEEDLAB_BENCH_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
T0 = datetime(2024, 6, 1)
DAYS = 14
POSTS = 7000
PER_EXPOSURE = 5


# Served post at position k (0-4) of an exposure whose first post is p0: p0, then four
# fixed offsets from it, so every row (exposure, item, like) derives from the same few numbers.
_POST_AT = "((p0 + (ARRAY[-1, 0, 7, 13, 29])[{k} + 1]) % :posts + 1)"

# One row per exposure, in SQL: the experiment's n exposures over DAYS days, users cycling
# through g % users (about n / users exposures each, scattered over the days), arm by a hash of
# the user, 0.5% fallbacks, latencies 2-12 ms (+1 ms in test); then the pre-period (CUPED):
# npre exposures outside any experiment in the DAYS before T0. h is a per-exposure hash that
# decides likes and views (an integer hash: the query repeats it wherever it is used).
_EXPOSURES = """
SELECT lpad(to_hex(g), 36, '0') AS rid,
       CAST(:t0 AS timestamp) + make_interval(secs => (g * 7919) % :span) AS ts,
       g % :u + 1 AS uid, 'bench' AS experiment, CAST(:v AS text) AS version, grp,
       grp AS model, (g * 31) % :posts + 1 AS p0, g % 200 = 0 AS fallback,
       2 + (g % 997) / 100.0 + CASE WHEN grp = 'test' THEN 1 ELSE 0 END AS latency,
       hashint8(g) & 2147483647 AS h
FROM generate_series(1::bigint, :n) AS g,
     LATERAL (SELECT CASE WHEN ((g % :u + 1) * 2654435761) % 1000 < 500
                          THEN 'control' ELSE 'test' END AS grp) AS arm
UNION ALL
SELECT 'pre' || lpad(to_hex(g), 33, '0'),
       CAST(:t0 AS timestamp) - make_interval(secs => 1 + (g * 7919) % :span),
       g % :u + 1, NULL, 'pre', 'default', 'control', (g * 31) % :posts + 1, false, 2.0,
       hashint8(-g) & 2147483647
FROM generate_series(1::bigint, :npre) AS g
"""


def _generate(conn, params: dict, spent: dict[str, float]) -> None:
    """All rows from generate_series, each table in one pass without reading another back.

    Likes: ~3% of exposures (3.2% in test) get one like on a served post within 3000 s,
    another 1% a like 2 hours later (outside the attribution window); 10% get a view."""
    posts = ", ".join(_POST_AT.format(k=k) for k in range(PER_EXPOSURE))
    steps = {
        "exposures": f"""
            INSERT INTO exposures (request_id, ts, served_at, user_id, experiment,
                                   config_version, exp_group, model, model_version, post_ids,
                                   fallback, latency_ms)
            SELECT rid, ts, ts, uid, experiment, version, grp, model, 'v1',
                   json_build_array({posts}), fallback, latency
            FROM ({_EXPOSURES}) AS x""",
        "exposure_items": f"""
            INSERT INTO exposure_items (request_id, position, post_id, user_id, ts)
            SELECT rid, k, {_POST_AT.format(k="k")}, uid, ts
            FROM (SELECT rid, p0, uid, ts, generate_series(0, {PER_EXPOSURE - 1}) AS k
                  FROM ({_EXPOSURES}) AS e) AS x""",
        "feed": f"""
            INSERT INTO feed (timestamp, user_id, post_id, action, target)
            SELECT ts + ev.delay, uid, {_POST_AT.format(k="ev.pos")}, ev.action, ev.target
            FROM ({_EXPOSURES}) AS x,
                 LATERAL (VALUES
                   (h % 1000 < CASE WHEN grp = 'test' THEN 32 ELSE 30 END,
                    make_interval(secs => h / 1000 % 3000 + 1), CAST(h % 5 AS int), 'like',
                    CAST(NULL AS smallint)),
                   (h % 1000 BETWEEN 900 AND 909, interval '2 hours', 0, 'like', NULL),
                   (h % 10 = 3, interval '5 seconds', 1, 'view', 0)
                 ) AS ev(keep, delay, pos, action, target)
            WHERE ev.keep""",
    }
    for table, sql in steps.items():
        with _timed(spent, f"insert {table}"):
            conn.execute(text(sql), params)


LOADED = ("exposures", "exposure_items", "feed")


def _indexes(conn) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """Primary keys (table, name, definition) and other indexes (name, definition) of the
    loaded tables, read from the catalog so whatever the migrations created is rebuilt."""
    pks = conn.execute(
        text(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE contype = 'p' AND conrelid::regclass::text = ANY(:t)"
        ),
        {"t": list(LOADED)},
    ).all()
    others = conn.execute(
        text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename = ANY(:t) AND indexname <> ALL(:pk)"
        ),
        {"t": list(LOADED), "pk": [name for _, name, _ in pks]},
    ).all()
    return [tuple(r) for r in pks], [tuple(r) for r in others]


def _load(conn, params: dict, spent: dict[str, float]) -> None:
    """Bulk load without index maintenance, then build the same indexes once, sorted.

    The tables are made UNLOGGED first: the database is throwaway, skipping the write-ahead
    log saves about a third of the load, and the analysis reads them as it reads logged ones."""
    for table in LOADED:
        conn.execute(text(f'ALTER TABLE "{table}" SET UNLOGGED'))
    pks, others = _indexes(conn)
    for name, _ in others:
        conn.execute(text(f'DROP INDEX "{name}"'))
    for table, name, _ in pks:
        conn.execute(text(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"'))
    _generate(conn, params, spent)
    for table, name, definition in pks:
        with _timed(spent, f"index {name}"):
            conn.execute(text(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}'))
    for name, definition in others:
        with _timed(spent, f"index {name}"):
            conn.execute(text(definition))


@contextlib.contextmanager
def _timed(spent: dict[str, float], step: str) -> Iterator[None]:
    t = time.perf_counter()
    yield
    spent[step] = time.perf_counter() - t


def _create(engine, args: argparse.Namespace) -> dict[str, float]:
    """Generate the dataset; returns the seconds spent per step."""
    params = {
        "n": args.exposures,
        "u": args.users,
        "npre": args.pre_exposures,
        "t0": T0,
        "span": DAYS * 86400,
        "posts": POSTS,
    }
    spent: dict[str, float] = {}
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL synchronous_commit = off"))
        conn.execute(text("SET LOCAL maintenance_work_mem = '1GB'"))
        params["v"] = store_config(
            conn, config_yaml("bench", "bench-1", {"control": 50, "test": 50}), T0
        )
        _load(conn, params, spent)
    with (
        engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn,
        _timed(spent, "vacuum analyze"),
    ):
        conn.execute(text(f"VACUUM ANALYZE {', '.join(LOADED)}"))
    return spent


def _cpu_seconds(pid: int) -> float:
    """user + system CPU of a local process (the PostgreSQL backend serving the analysis):
    on a shared machine wall time also measures the neighbours, CPU time does not."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exposures", type=int, default=10_000_000)
    ap.add_argument("--users", type=int, default=250_000)
    ap.add_argument("--pre-exposures", type=int, default=1_000_000)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--keep", action="store_true", help="Do not drop the database at the end.")
    ap.add_argument("--reuse", help="Analyse an existing benchmark database (kept by --keep).")
    args = ap.parse_args()
    console = Console()
    name = args.reuse or f"feedlab_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    if not args.reuse:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        engine = make_engine(url)
        upgrade(engine)
        if not args.reuse:
            with console.status("generating data with generate_series ..."):
                spent = _create(engine, args)
            gen = Table(title=f"data generation into {name} (not part of the budget)")
            gen.add_column("step")
            gen.add_column("seconds", justify="right")
            for step, secs in spent.items():
                gen.add_row(step, f"{secs:.0f}")
            gen.add_row("[bold]total[/]", f"[bold]{sum(spent.values()):.0f}[/]")
            console.print(gen)
        with engine.connect() as conn:  # row counts as estimated by the last ANALYZE
            sizes = dict(
                conn.execute(
                    text(
                        "SELECT relname, reltuples::bigint FROM pg_class WHERE relname = ANY(:t) "
                        "AND relnamespace = current_schema()::regnamespace ORDER BY relname"
                    ),
                    {"t": list(LOADED)},
                ).all()
            )
        console.print(f"database {name}: rows ≈ {sizes}")
        with engine.connect() as conn:  # the pooled connection analyze() will reuse
            backend = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        load = os.getloadavg()[0]
        with console.status("analysing ..."):
            cpu0, py0 = _cpu_seconds(backend), time.process_time()
            t = time.perf_counter()
            report = analyze(engine, "bench", options=Options(n_boot=args.bootstrap))
            total = time.perf_counter() - t
            cpu = _cpu_seconds(backend) - cpu0 + time.process_time() - py0
        end_load = os.getloadavg()[0]
        engine.dispose()
        phase = report.phases[0]
        table = Table(title=f"feedlab analyze over {phase.exposures:,} exposures (PostgreSQL)")
        table.add_column("step")
        table.add_column("seconds", justify="right")
        for step, secs in phase.timings_s.items():
            table.add_row(step, f"{secs:.1f}")
        table.add_row("[bold]total analyze() wall time[/]", f"[bold]{total:.1f}[/]")
        table.add_row("CPU time: PostgreSQL backend (not its workers) + Python", f"{cpu:.1f}")
        table.add_row("machine load average (1 min) at start / end", f"{load:.1f} / {end_load:.1f}")
        table.add_row("budget", "60.0")
        console.print(table)
        hr = phase.comparisons[0].metric("hitrate").test
        console.print(
            f"users {phase.users}, SRM p={phase.health.srm.p_value:.3g}, "
            f"HitRate lift {hr.lift:+.2%} (p={hr.p_value:.3g})"
        )
    finally:
        if not (args.keep or args.reuse):
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
