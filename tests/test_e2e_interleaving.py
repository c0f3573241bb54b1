"""Interleaving end to end over HTTP on PostgreSQL: a demo world, `feedlab serve` (uvicorn)
running an interleaving experiment, simulated users whose likes follow the world's hidden
preferences, `feedlab analyze --format json`; the per-user credits recomputed from the raw
tables in Python match the report.

The arms are the built-in `random` (control) and `popular` (test) rankers, so no training is
needed (the trained arms' comparison is `benchmarks/interleaving.py`)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from feedlab.storage.demo import simulate as sim
from feedlab.storage.engine import make_engine

from feedlab.demo import feedlab_cmd, serve_args
from feedlab.processes import free_port, serve_subprocess
from tests.support.interleaving import reference_credits

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

WORLD = ["--users", "200", "--posts", "200", "--days", "14", "--seed", "3"]
USERS, DAYS, REQUESTS_PER_DAY = 200, 2, 3
CONFIG = """\
default_model: popular
experiments:
  - name: e2e_il
    status: running
    salt: e2e-il
    traffic: 100
    design: interleaving
    arms:
      - {name: control, model: random}
      - {name: test, model: popular}
"""


def run(cmd: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(cmd[3:])} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_interleaving_served_simulated_analysed_and_recomputed(pg_url: str, tmp_path: Path):
    env = {**os.environ, "FEEDLAB_DATABASE_URL": pg_url, "HF_HUB_OFFLINE": "1"}
    spec = tmp_path / "world.json"
    run(feedlab_cmd("demo-data", *WORLD, "--spec-out", str(spec)), env)
    config = tmp_path / "e2e_il.yaml"
    config.write_text(CONFIG)
    engine = make_engine(pg_url)
    plan = sim.demo_plan(engine, spec)
    port = free_port()
    with serve_subprocess(
        serve_args(config, port, tmp_path / "spool"), env, port, tmp_path / "gw.log", timeout=300
    ):
        summary = sim.simulate(
            f"http://127.0.0.1:{port}",
            sim.sample_users(plan.user_ids, USERS, 1),
            plan.judge,
            start=plan.start,
            days=DAYS,
            requests_per_day=REQUESTS_PER_DAY,
            seed=1,
            progress=False,
        )
    assert summary.errors == 0 and set(summary.arms) == {"interleaved"}
    report = json.loads(run(feedlab_cmd("analyze", "e2e_il", "--format", "json"), env))
    assert report["design"] == "interleaving"
    (phase,) = report["phases"]
    assert phase["exposures"] == USERS * DAYS * REQUESTS_PER_DAY
    assert phase["fallbacks"] == 0 and phase["balance_flagged"] is False
    pref = phase["preference"]
    assert pref["delta_ci_low"] < pref["delta"] < pref["delta_ci_high"]
    assert pref["share_ci_low"] < pref["share"] < pref["share_ci_high"]
    assert phase["verdict"]["status"] in {"win", "loss", "inconclusive"}
    assert (phase["verdict"]["status"] == "inconclusive") == (pref["t_p"] >= 0.05)

    credits = reference_credits(engine, "e2e_il")
    engine.dispose()
    control = np.array([c.get("control", 0) for c in credits.values()])
    test = np.array([c.get("test", 0) for c in credits.values()])
    assert len(credits) == pref["users"] == USERS
    assert phase["credited_likes"] == {"control": control.sum(), "test": test.sum()}
    d = test - control
    assert (pref["wins"], pref["ties"], pref["losses"]) == (
        (d > 0).sum(),
        (d == 0).sum(),
        (d < 0).sum(),
    )
    assert pref["delta"] == pytest.approx(d.mean())
    assert pref["delta_sd"] == pytest.approx(d.std(ddof=1))
