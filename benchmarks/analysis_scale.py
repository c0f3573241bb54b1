"""Time `feedlab analyze` over 10 million exposures in PostgreSQL (budget: 60 s).

Creates a dedicated database, generates the data with generate_series in SQL (exposures,
one exposure_items row per served post, likes and views in feed, a pre-period for CUPED),
runs the analysis once and prints a table of step timings; drops the database at the end.

    .venv/bin/python benchmarks/analysis_scale.py [--exposures 10000000] [--users 250000]
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from analysis.online.analyze import Options, analyze
from analysis.online.synthetic import config_yaml, store_config
from storage.engine import make_engine
from storage.schema import exposure_items, exposures, feed

ADMIN_URL = os.environ.get(
    "FEEDLAB_BENCH_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
T0 = datetime(2024, 6, 1)
DAYS = 14
POSTS = 7000
PER_EXPOSURE = 5


def _generate(conn, version: str, n_exp: int, n_users: int, n_pre: int) -> None:
    """All rows from SQL; arms by user_id parity-free hash, ~3% of exposures get a like in
    the window (test arm a bit more), some likes fall outside it, views are noise."""
    span = DAYS * 86400
    params = {"n": n_exp, "u": n_users, "t0": T0, "span": span, "posts": POSTS, "v": version}
    conn.execute(
        text(
            """
        INSERT INTO exposures (request_id, ts, served_at, user_id, experiment, config_version,
                               exp_group, model, model_version, post_ids, fallback, latency_ms)
        SELECT lpad(to_hex(g), 36, '0'), ts, ts, uid, 'bench', :v, grp, grp, 'v1',
               json_build_array(p0, p0 % :posts + 1, (p0 + 7) % :posts + 1,
                                (p0 + 13) % :posts + 1, (p0 + 29) % :posts + 1),
               g % 200 = 0, 2 + (g % 997) / 100.0 + CASE WHEN grp = 'test' THEN 1 ELSE 0 END
        FROM (SELECT g, g % :u + 1 AS uid,
                     :t0 + make_interval(secs => (g * 7919) % :span) AS ts,
                     (g * 31) % :posts + 1 AS p0,
                     CASE WHEN ((g % :u + 1) * 2654435761) % 1000 < 500
                          THEN 'control' ELSE 'test' END AS grp
              FROM generate_series(1::bigint, :n) AS g) s
        """
        ),
        params,
    )
    conn.execute(
        text(
            """
        INSERT INTO exposures (request_id, ts, served_at, user_id, experiment, config_version,
                               exp_group, model, model_version, post_ids, fallback, latency_ms)
        SELECT 'pre' || lpad(to_hex(g), 33, '0'), ts, ts, g % :u + 1, NULL, 'pre', 'default',
               'control', 'v1',
               json_build_array(p0, p0 % :posts + 1, (p0 + 7) % :posts + 1,
                                (p0 + 13) % :posts + 1, (p0 + 29) % :posts + 1),
               false, 2.0
        FROM (SELECT g, :t0 - make_interval(secs => 1 + (g * 7919) % :span) AS ts,
                     (g * 31) % :posts + 1 AS p0
              FROM generate_series(1::bigint, :npre) AS g) s
        """
        ),
        params | {"npre": n_pre},
    )
    conn.execute(
        text(
            """
        INSERT INTO exposure_items (request_id, position, post_id, user_id, ts)
        SELECT e.request_id, k - 1, (e.post_ids ->> (k - 1))::bigint, e.user_id, e.ts
        FROM exposures e CROSS JOIN generate_series(1, 5) AS k
        """
        )
    )
    conn.execute(
        text(
            """
        INSERT INTO feed (timestamp, user_id, post_id, action, target)
        SELECT e.ts + make_interval(secs => (h % 3000) + 1), e.user_id,
               (e.post_ids ->> (h % 5)::int)::bigint, 'like', NULL::smallint
        FROM (SELECT *, abs(hashtext(request_id)) AS h FROM exposures) e
        WHERE e.h % 1000 < CASE WHEN e.exp_group = 'test' THEN 32 ELSE 30 END
        UNION ALL
        SELECT e.ts + interval '2 hours', e.user_id, (e.post_ids ->> 0)::bigint, 'like', NULL
        FROM exposures e WHERE abs(hashtext(e.request_id)) % 1000 BETWEEN 900 AND 909
        UNION ALL
        SELECT e.ts + interval '5 seconds', e.user_id, (e.post_ids ->> 1)::bigint, 'view', 0
        FROM exposures e WHERE abs(hashtext(e.request_id)) % 10 = 3
        """
        )
    )


LOADED = (exposures, exposure_items, feed)
MIGRATION_INDEXES = {  # created by later migrations, not declared in storage/schema.py
    "ix_exposure_items_user_post_ts": "exposure_items (user_id, post_id, ts) "
    "INCLUDE (request_id, position)",
}


def _drop_indexes(conn) -> None:
    """Bulk load without index maintenance; `_create_indexes` rebuilds the same ones."""
    for table in LOADED:
        for idx in table.indexes:
            conn.execute(text(f'DROP INDEX "{idx.name}"'))
    for name in MIGRATION_INDEXES:
        conn.execute(text(f'DROP INDEX IF EXISTS "{name}"'))
    for table in (exposures, exposure_items):
        conn.execute(text(f'ALTER TABLE {table.name} DROP CONSTRAINT "pk_{table.name}"'))


def _create_indexes(conn) -> None:
    for table in (exposures, exposure_items):
        cols = ", ".join(c.name for c in table.primary_key.columns)
        conn.execute(
            text(f'ALTER TABLE {table.name} ADD CONSTRAINT "pk_{table.name}" PRIMARY KEY ({cols})')
        )
    for table in LOADED:
        for idx in table.indexes:
            idx.create(conn)
    for name, definition in MIGRATION_INDEXES.items():
        conn.execute(text(f'CREATE INDEX "{name}" ON {definition}'))


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
        t = time.perf_counter()
        if not args.reuse:
            with console.status("generating data with generate_series ..."):
                with engine.begin() as conn:
                    conn.execute(text("SET LOCAL synchronous_commit = off"))
                    conn.execute(text("SET LOCAL maintenance_work_mem = '1GB'"))
                    version = store_config(
                        conn, config_yaml("bench", "bench-1", {"control": 50, "test": 50}), T0
                    )
                    _drop_indexes(conn)
                    _generate(conn, version, args.exposures, args.users, args.pre_exposures)
                    _create_indexes(conn)
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(text("VACUUM ANALYZE exposures, exposure_items, feed"))
        with engine.connect() as conn:
            sizes = {
                t_: conn.execute(text(f"SELECT count(*) FROM {t_}")).scalar_one()
                for t_ in ("exposures", "exposure_items", "feed")
            }
        gen_s = time.perf_counter() - t
        console.print(f"database {name}: {sizes}, generated in {gen_s:.0f} s")
        with engine.connect() as conn:  # the pooled connection analyze() will reuse
            backend = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        load = os.getloadavg()[0]
        with console.status("analysing ..."):
            cpu0, py0 = _cpu_seconds(backend), time.process_time()
            t = time.perf_counter()
            report = analyze(engine, "bench", options=Options(n_boot=args.bootstrap))
            total = time.perf_counter() - t
            cpu = _cpu_seconds(backend) - cpu0 + time.process_time() - py0
        engine.dispose()
        phase = report["phases"][0]
        table = Table(title=f"feedlab analyze over {phase['exposures']:,} exposures (PostgreSQL)")
        table.add_column("step")
        table.add_column("seconds", justify="right")
        for step, secs in phase["timings_s"].items():
            table.add_row(step, f"{secs:.1f}")
        table.add_row("[bold]total analyze() wall time[/]", f"[bold]{total:.1f}[/]")
        table.add_row("CPU time: PostgreSQL backend + Python", f"{cpu:.1f}")
        table.add_row("machine load average (1 min) at start", f"{load:.1f}")
        table.add_row("budget", "60.0")
        console.print(table)
        hr = next(m for m in phase["comparisons"][0]["metrics"] if m["metric"] == "hitrate")
        console.print(
            f"users {phase['users']}, SRM p={phase['srm']['p_value']:.3g}, "
            f"HitRate lift {hr['test']['lift']:+.2%} (p={hr['test']['p_value']:.2g}); "
            f"rows: {sizes}; data generation {gen_s:.0f} s (not part of the budget)"
        )
    finally:
        if not (args.keep or args.reuse):
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
