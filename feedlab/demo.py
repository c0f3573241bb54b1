"""`feedlab demo`: the whole loop on one machine, from an empty folder to an experiment report.

Each step is the same `feedlab` command a user would run (so the demo exercises the real CLI),
run as a child process with the demo's database in `FEEDLAB_DATABASE_URL`; the simulator runs
in process because it is ours. The demo owns the SQLite file it creates: a marker file beside it
lets a second `make demo` rebuild it, while a `feedlab.db` the demo did not create is refused.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
from sqlalchemy import func, select

EXPERIMENT = "bert_vs_catboost"
INTERLEAVED_EXPERIMENT = "bert_vs_catboost_interleaved"
"""Runs beside EXPERIMENT on the users it leaves: every one of them sees both arms merged."""
MARKER = "feedlab.db-demo"
WORLD_SIZE = (1000, 600)
"""Demo world (users, posts): big enough for a clear result, small enough to train in minutes."""
TRAIN_ITERATIONS = "40"
"""Most CatBoost trees per arm in the demo: on the demo world both arms' held-out HitRate peaks
at 10 trees, and the first trees of a longer fit are the same trees, so more only costs time."""
HEALTH_TIMEOUT_S = 300.0
FLUSH_TIMEOUT_S = 60
DEMO_CONFIG = """\
# Written by `feedlab demo`: the demo's experiment, both arms in process.
default_model: control
experiments:
  - name: {experiment}
    status: {status}
    salt: "{experiment}-demo"
    traffic: {traffic}
    arms:
      - {{name: control, model: {control}, weight: 50}}
      - {{name: test, model: {test}, weight: 50}}
{interleaving}models:
  control: {{backend: inprocess, artifact: "{artifacts}/control"}}
  test: {{backend: inprocess, artifact: "{artifacts}/test"}}
"""


INTERLEAVING_BLOCK = """\
  - name: {name}
    status: {status}
    salt: "{name}-demo"
    traffic: 100
    design: interleaving
    arms:
      - {{name: control, model: {control}}}
      - {{name: test, model: {test}}}
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
    status: str = "running",
    interleaving: str | None = None,
) -> Path:
    """An experiments file routing the arms to `control`/`test` models (both may be the same
    model for an A/A test) with artifacts under `artifacts`; a `draft` config sends every user
    to the default model, control. With `interleaving` (a name), the A/B experiment takes half
    the users and an interleaving experiment of the same two arms takes the other half."""
    block = ""
    if interleaving:
        block = INTERLEAVING_BLOCK.format(
            name=interleaving, control=control, test=test, status=status
        )
    path.write_text(
        DEMO_CONFIG.format(
            experiment=experiment,
            traffic=50 if interleaving else 100,
            interleaving=block,
            control=control,
            test=test,
            status=status,
            artifacts=artifacts.resolve(),
        )
    )
    return path


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def heading(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run_step(step: str, cmd: list[str], env: dict[str, str]) -> None:
    """Run one CLI command, its own progress bars visible; a failure names the step."""
    print(f"$ feedlab {' '.join(cmd[3:])}", flush=True)
    result = subprocess.run(cmd, env=env)
    if result.returncode != 0:
        raise DemoError(f"step {step} failed (exit {result.returncode}): {' '.join(cmd[3:])}")


def train_cmd(arm: str, out: Path, *extra: str) -> list[str]:
    """`feedlab train ARM` writing its artifact folder to `out`."""
    return feedlab_cmd("train", arm, "--out", str(out), *extra)


def serve_args(config: Path, port: int, spool: Path) -> list[str]:
    """`feedlab serve` arguments for a loopback gateway on `port`: reloads and errors logged at
    info level, requests not."""
    return [
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--config",
        str(config),
        "--spool-dir",
        str(spool),
        "--log-level",
        "info",
        "--no-access-log",
    ]


def training_cutoff(db_url: str) -> datetime:
    """Train on the whole stored history: the cutoff is the midnight after its last event, which
    is also where the simulated days begin."""
    from feedlab.storage.demo.simulate import history_end, next_midnight
    from feedlab.storage.engine import make_engine

    engine = make_engine(db_url)
    try:
        end = history_end(engine)
    finally:
        engine.dispose()
    if end is None:
        raise DemoError("the demo world has no feed events")
    return next_midnight(end)


def wait_for_exposures(db_url: str, expected: int) -> int:
    """Exposures are logged asynchronously: wait (bounded) until all responses are stored."""
    from feedlab.storage.engine import make_engine
    from feedlab.storage.schema import exposures

    engine = make_engine(db_url)
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
    users: int = 500,
    days: int = 3,
    port: int = 8000,
    seed: int = 0,
    serve: bool = True,
    world: tuple[int, int] = WORLD_SIZE,
) -> Path:
    """Every step of the demo; returns the HTML report's path. `world` = (users, posts).

    The gateway starts as soon as control is trained, serving control to everyone (the
    experiment is a draft) while the test arm trains; then the experiment starts with a
    reload, and only then does the simulated traffic begin."""
    from feedlab.gateway.settings import Settings
    from feedlab.processes import free_port

    directory = directory.resolve()
    db = prepare_directory(directory)
    token = Settings().admin_token or secrets.token_urlsafe(16)
    env = {
        **os.environ,
        "FEEDLAB_DATABASE_URL": f"sqlite:///{db}",
        "FEEDLAB_ADMIN_TOKEN": token,
        "HF_HUB_OFFLINE": "1",
    }
    artifacts = directory / "artifacts"
    reports = directory / "reports"
    reports.mkdir(exist_ok=True)
    spec = artifacts / "demo_world.json"
    artifacts.mkdir(exist_ok=True)
    started = time.monotonic()

    heading("1/6 build the demo world")
    world_args = ["--users", str(world[0]), "--posts", str(world[1]), "--seed", str(seed)]
    run_step("1/6", feedlab_cmd("demo-data", *world_args, "--spec-out", str(spec)), env)
    train_args = ["--t0", training_cutoff(env["FEEDLAB_DATABASE_URL"]).isoformat()]
    train_args += ["--iterations", TRAIN_ITERATIONS]
    heading("2/6 train the control arm (CatBoost)")
    run_step("2/6", train_cmd("control", artifacts / "control", *train_args), env)

    config = write_config(
        reports / "experiments.demo.yaml",
        artifacts,
        status="draft",
        interleaving=INTERLEAVED_EXPERIMENT,
    )
    port = port if port and port_is_free(port) else free_port()
    heading(f"3/6 start the gateway on 127.0.0.1:{port}, serving control to everyone")
    with running_gateway(config, port, directory, env) as (proc, url):
        print_access(url, token, reports / "gateway.log")
        heading("4/6 train the test arm (sentence embeddings) while the gateway serves control")
        run_step("4/6", train_cmd("test", artifacts / "test", *train_args), env)
        print(
            "(each arm's held-out HitRate is among its own candidates: compare an arm with its\n"
            " prior, not with the other arm; the experiment below compares them on one footing)"
        )
        start_experiment(
            url, token, write_config(config, artifacts, interleaving=INTERLEAVED_EXPERIMENT)
        )
        report = traffic_and_report(url, env, spec, directory, users=users, days=days, seed=seed)
        minutes = (time.monotonic() - started) / 60
        print(f"\nreport: {report}  (demo took {minutes:.1f} min)")
        print("dashboard: feedlab dashboard --port 8050  (the experiment list and live reports)")
        if serve:
            print_access(url, token, reports / "gateway.log")
            print("the gateway keeps serving; Ctrl-C to stop", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                proc.wait()
    return report


def print_access(url: str, token: str, log: Path) -> None:
    """How to reach the gateway, as Jupyter prints its URL and token."""
    print(f"gateway: {url}    API docs: {url}/docs    log: {log}")
    print(f"try it:  curl -H 'X-Feedlab-QA: 1' '{url}/post/recommendations/?id=1&limit=5'")
    print(f"admin token: {token}")
    print(f"         curl -H 'Authorization: Bearer {token}' {url}/admin/config", flush=True)


def start_experiment(url: str, token: str, config: Path) -> None:
    """Apply the edited file now (the file watcher would too, within a second): POST
    /admin/reload answers once the test arm is loaded and the experiment is running."""
    print(f"$ curl -X POST -H 'Authorization: Bearer ...' {url}/admin/reload", flush=True)
    response = httpx.post(
        f"{url}/admin/reload",
        headers={"Authorization": f"Bearer {token}"},
        timeout=HEALTH_TIMEOUT_S,
    )
    body = response.json()
    if response.status_code != 200:
        raise DemoError(f"the gateway refused {config}: {body}")
    print(
        f"{EXPERIMENT} and {INTERLEAVED_EXPERIMENT} are running: "
        f"config_version {body['config_version']} ({config.name})"
    )


@contextlib.contextmanager
def running_gateway(
    config: Path, port: int, directory: Path, env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen, str]]:
    """`feedlab serve` as a child process until the block ends (then stopped gracefully, so
    the exposure log is flushed)."""
    from feedlab.processes import serve_subprocess

    log = directory / "reports" / "gateway.log"
    args = serve_args(config, port, directory / "spool")
    print(f"$ feedlab {' '.join(args)}  (loading history and models; log: {log})", flush=True)
    with contextlib.ExitStack() as stack:
        try:
            proc = stack.enter_context(serve_subprocess(args, env, port, log, HEALTH_TIMEOUT_S))
        except RuntimeError as exc:
            raise DemoError(f"the gateway did not start: {exc}") from None
        yield proc, f"http://127.0.0.1:{port}"


def traffic_and_report(
    url: str,
    env: dict[str, str],
    spec: Path,
    directory: Path,
    *,
    users: int,
    days: int,
    seed: int,
) -> Path:
    """Steps 5 and 6: simulated traffic against the gateway, then the analysis."""
    from feedlab.storage.demo import simulate as sim
    from feedlab.storage.engine import make_engine

    db_url = env["FEEDLAB_DATABASE_URL"]
    heading(f"5/6 simulate {days} days of traffic from {users} users")
    engine = make_engine(db_url)
    try:
        plan = sim.demo_plan(engine, spec)
    finally:
        engine.dispose()
    picked = sim.sample_users(plan.user_ids, users, seed)
    try:
        summary = sim.simulate(url, picked, plan.judge, start=plan.start, days=days, seed=seed)
    except sim.GatewayUnreachable as exc:
        raise DemoError(f"the gateway stopped answering during the simulation: {exc}") from None
    print(summary.table(), flush=True)
    wait_for_exposures(db_url, summary.requests - summary.errors)

    reports = {EXPERIMENT: "demo.html", INTERLEAVED_EXPERIMENT: "demo-interleaving.html"}
    heading("6/6 analyse both experiments")
    for experiment, page in reports.items():
        run_step("6/6", feedlab_cmd("analyze", experiment), env)
        out = directory / "reports" / page
        run_step(
            "6/6", feedlab_cmd("analyze", experiment, "--format", "html", "--out", str(out)), env
        )
    return directory / "reports" / reports[EXPERIMENT]
