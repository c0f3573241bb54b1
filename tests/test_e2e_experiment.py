"""The whole loop on PostgreSQL, through the real CLI and real HTTP: a small demo world, both arms
trained, `feedlab serve` (uvicorn) running the experiment, simulated users whose likes follow the
world's hidden preferences, then `feedlab analyze --format json`.

A/A first (both arms the control model): no SRM, no significant HitRate difference.
Then A/B on the same database, in the simulated days after (control = CatBoost, test =
embeddings): the world hides a within-topic taste that shows only in post words, so the test arm
must come out ahead on HitRate with p < 0.05, again without SRM.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from feedlab.demo import feedlab_cmd, serve_args, train_cmd, training_cutoff, write_config
from gateway.testing import free_port, serve_subprocess
from storage.demo import simulate as sim
from storage.engine import make_engine

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

WORLD = ["--users", "300", "--posts", "300", "--days", "28", "--seed", "11"]
TRAIN = ["--iterations", "150"]
USERS, DAYS, REQUESTS_PER_DAY = 300, 2, 3


def run(cmd: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(cmd[3:])} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def run_experiment(config: Path, spec: Path, env: dict[str, str], tmp: Path, seed: int) -> dict:
    """Serve `config`, simulate DAYS days after the newest stored event, analyse as JSON."""
    engine = make_engine(env["FEEDLAB_DATABASE_URL"])
    try:
        plan = sim.demo_plan(engine, spec)
    finally:
        engine.dispose()
    users = sim.sample_users(plan.user_ids, USERS, seed)
    port = free_port()
    log = tmp / f"gateway-{config.stem}.log"
    with serve_subprocess(serve_args(config, port, tmp / "spool"), env, port, log, timeout=300):
        summary = sim.simulate(
            f"http://127.0.0.1:{port}",
            users,
            plan.judge,
            start=plan.start,
            days=DAYS,
            requests_per_day=REQUESTS_PER_DAY,
            seed=seed,
            progress=False,
        )
    # leaving the block stopped the gateway gracefully, flushing its exposure log
    assert summary.errors == 0
    assert summary.requests == len(users) * DAYS * REQUESTS_PER_DAY
    experiment = config.stem
    out = run(feedlab_cmd("analyze", experiment, "--format", "json", "--bootstrap", "200"), env)
    report = json.loads(out)
    assert len(report["phases"]) == 1
    return report["phases"][0]


def hitrate(phase: dict) -> dict:
    (comparison,) = phase["comparisons"]
    assert (comparison["control"], comparison["arm"]) == ("control", "test")
    return next(m for m in comparison["metrics"] if m["metric"] == "hitrate")


def test_an_aa_test_finds_nothing_and_the_test_arm_wins(pg_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "FEEDLAB_DATABASE_URL": pg_url, "HF_HUB_OFFLINE": "1"}
    spec = tmp_path / "world.json"
    run(feedlab_cmd("demo-data", *WORLD, "--spec-out", str(spec)), env)
    artifacts = tmp_path / "artifacts"
    t0 = training_cutoff(pg_url)
    for arm in ("control", "test"):
        run(train_cmd(arm, artifacts / arm, "--t0", t0.isoformat(), *TRAIN), env)

    aa = write_config(
        tmp_path / "e2e_aa.yaml", artifacts, experiment="e2e_aa", control="control", test="control"
    )
    phase = run_experiment(aa, spec, env, tmp_path, seed=2)
    assert phase["srm"]["flagged"] is False
    assert phase["exposures"] == USERS * DAYS * REQUESTS_PER_DAY
    metric = hitrate(phase)
    assert metric["test"]["p_value"] >= 0.05, metric
    assert metric["significant"] is False

    ab = write_config(tmp_path / "e2e_ab.yaml", artifacts, experiment="e2e_ab")
    phase = run_experiment(ab, spec, env, tmp_path, seed=1)
    assert phase["srm"]["flagged"] is False
    assert phase["exposures"] == USERS * DAYS * REQUESTS_PER_DAY
    result = hitrate(phase)["test"]
    assert result["diff"] > 0, result
    assert result["p_value"] < 0.05, result
