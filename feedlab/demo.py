"""`feedlab demo`: the whole loop on one machine, from an empty folder to an experiment report.

Each step is the same `feedlab` command a user would run (so the demo exercises the real CLI),
run as a child process with the demo's database in `FEEDLAB_DATABASE_URL`; the simulator runs
in process because it is ours. The demo owns the SQLite file it creates: a marker file beside it
lets a second `make demo` rebuild it, while a `feedlab.db` the demo did not create is refused.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import func, select

EXPERIMENT = "bert_vs_catboost"
MARKER = ".feedlab-demo"
HEALTH_TIMEOUT_S = 300
FLUSH_TIMEOUT_S = 60
DEMO_CONFIG = """\
# Written by `feedlab demo`: the demo's experiment, both arms in process.
default_model: control
experiments:
  - name: {experiment}
    status: running
    salt: "{experiment}-demo"
    traffic: 100
    arms:
      - {{name: control, model: {control}, weight: 50}}
      - {{name: test, model: {test}, weight: 50}}
models:
  control: {{backend: inprocess, artifact: "{artifacts}/control"}}
  test: {{backend: inprocess, artifact: "{artifacts}/test"}}
"""


class DemoError(RuntimeError):
    """A demo step failed; the message says which and what to do."""


def feedlab_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "feedlab", *args]


def write_config(
    path: Path,
    artifacts: Path,
    *,
    experiment: str = EXPERIMENT,
    control: str = "control",
    test: str = "test",
) -> Path:
    """An experiments file routing the arms to `control`/`test` models (both may be the same
    model for an A/A test) with artifacts under `artifacts`."""
    path.write_text(
        DEMO_CONFIG.format(
            experiment=experiment, control=control, test=test, artifacts=artifacts.resolve()
        )
    )
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_step(title: str, cmd: list[str], env: dict[str, str]) -> None:
    """Run one CLI step, its own progress bars visible; a failure names the step."""
    print(f"\n== {title}\n$ feedlab {' '.join(cmd[3:])}", flush=True)
    result = subprocess.run(cmd, env=env)
    if result.returncode != 0:
        raise DemoError(f"step '{title}' failed (exit {result.returncode}): {' '.join(cmd[3:])}")


def start_gateway(
    env: dict[str, str], config: Path, port: int, log: Path
) -> tuple[subprocess.Popen, str]:
    """`feedlab serve` on 127.0.0.1:`port`; returns once /health answers 200."""
    cmd = feedlab_cmd("serve", "--host", "127.0.0.1", "--port", str(port), "--config", str(config))
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoError(f"the gateway exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop(proc)
    raise DemoError(f"the gateway did not answer /health within {HEALTH_TIMEOUT_S} s; see {log}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for_exposures(db_url: str, expected: int) -> int:
    """Exposures are logged asynchronously: wait (bounded) until all responses are stored."""
    from storage.engine import make_engine
    from storage.schema import exposures

    engine = make_engine(db_url, migrate=False)
    try:
        deadline = time.monotonic() + FLUSH_TIMEOUT_S
        while True:
            with engine.connect() as conn:
                n = conn.execute(select(func.count()).select_from(exposures)).scalar_one()
            if n >= expected or time.monotonic() > deadline:
                return n
            time.sleep(0.5)
    finally:
        engine.dispose()


def prepare_directory(directory: Path) -> Path:
    """The demo's SQLite file, emptied if an earlier demo made it; refuse anything else."""
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / "feedlab.db"
    if db.exists() and not (directory / MARKER).exists():
        raise DemoError(
            f"{db} exists and was not created by `feedlab demo`; use --dir for another folder"
        )
    for path in (db, db.with_name("feedlab.db-wal"), db.with_name("feedlab.db-shm")):
        path.unlink(missing_ok=True)
    (directory / MARKER).write_text("this folder's feedlab.db was built by `feedlab demo`\n")
    return db


def run_demo(
    directory: Path,
    *,
    users: int = 300,
    days: int = 3,
    port: int = 8000,
    seed: int = 0,
    serve: bool = True,
) -> Path:
    """Every step of the demo; returns the HTML report's path."""
    from storage.demo import simulate as sim
    from storage.engine import make_engine

    directory = directory.resolve()
    db = prepare_directory(directory)
    db_url = f"sqlite:///{db}"
    env = {**os.environ, "FEEDLAB_DATABASE_URL": db_url, "HF_HUB_OFFLINE": "1"}
    artifacts = directory / "artifacts"
    reports = directory / "reports"
    reports.mkdir(exist_ok=True)
    started = time.monotonic()

    run_step("1/6 build the demo world", feedlab_cmd("demo-data", "--seed", str(seed)), env)
    run_step(
        "2/6 train the control arm (CatBoost)",
        feedlab_cmd("train", "control", "--out", str(artifacts / "control")),
        env,
    )
    run_step(
        "3/6 train the test arm (sentence embeddings)",
        feedlab_cmd("train", "test", "--out", str(artifacts / "test")),
        env,
    )
    config = write_config(directory / "experiments.demo.yaml", artifacts)
    print(f"\n== 4/6 start the gateway ({config.name})", flush=True)
    port = port or free_port()
    gateway, url = start_gateway(env, config, port, directory / "gateway.log")
    try:
        print(f"gateway up at {url}", flush=True)
        print(f"\n== 5/6 simulate {days} days of traffic from {users} users", flush=True)
        engine = make_engine(db_url, migrate=False)
        try:
            plan = sim.demo_plan(engine)
        finally:
            engine.dispose()
        picked = sim.sample_users(plan.user_ids, users, seed)
        summary = sim.simulate(url, picked, plan.judge, start=plan.start, days=days, seed=seed)
        print(summary.table(), flush=True)
        wait_for_exposures(db_url, summary.requests - summary.errors)

        report = reports / "demo.html"
        run_step(
            "6/6 analyse the experiment",
            feedlab_cmd("analyze", EXPERIMENT, "--format", "table"),
            env,
        )
        run_step(
            "6/6 write the HTML report",
            feedlab_cmd("analyze", EXPERIMENT, "--format", "html", "--out", str(report)),
            env,
        )
        minutes = (time.monotonic() - started) / 60
        print(f"\nreport: {report}  (demo took {minutes:.1f} min)")
        print(f"try it:  curl '{url}/post/recommendations/?id={picked[0]}&limit=5'")
        print(f"metrics: curl {url}/metrics    docs: {url}/docs")
        if serve:
            print("gateway keeps serving; Ctrl-C to stop", flush=True)
            try:
                gateway.wait()
            except KeyboardInterrupt:
                print("\nstopping the gateway")
        return report
    finally:
        stop(gateway)
