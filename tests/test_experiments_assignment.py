"""The assignment function: the documented formula, split, independence, stability, SQL twin,
CLI."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from feedlab.experiments.assignment import Assigner, assign, assignment_sql
from feedlab.experiments.config import ExperimentsConfig, parse_config
from scipy.stats import chi2_contingency, chisquare
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from feedlab.cli import app

N = 20_000


def make_config(
    salt: str = "s1",
    traffic: float = 100,
    weights: tuple = (50, 50),
    status: str = "running",
    qa_users: str = "{}",
) -> ExperimentsConfig:
    arms = "\n".join(
        f"      - {{name: arm{i}, model: popular, weight: {w}}}" for i, w in enumerate(weights)
    )
    return parse_config(
        f"""default_model: popular
experiments:
  - name: e
    status: {status}
    salt: "{salt}"
    traffic: {traffic}
    qa_users: {qa_users}
    arms:
{arms}
"""
    ).config


def groups(config: ExperimentsConfig, n: int = N) -> list[str]:
    assigner = Assigner(config)
    return [assigner.assign(u).exp_group for u in range(n)]


def test_assignment_is_the_documented_formula() -> None:
    """bucket = md5(user_id + salt) % 10000 decides entry; slot = (h // 10000) % 10000 the arm."""
    assigner = Assigner(make_config(salt="salt", traffic=37, weights=(30, 70)))
    for uid in (*range(2000), 10**12):
        h = int(hashlib.md5((str(uid) + "salt").encode()).hexdigest(), 16)
        expected = (
            "default" if h % 10000 >= 3700 else "arm0" if (h // 10000) % 10000 < 3000 else "arm1"
        )
        assert assigner.assign(uid).exp_group == expected, uid


def test_deterministic_and_pure() -> None:
    cfg = make_config()
    assert groups(cfg, 500) == groups(make_config(), 500)
    assert assign(cfg, 7) == Assigner(cfg).assign(7)


@pytest.mark.parametrize("weights", [(50, 50), (20, 30, 50), (1, 2)])
def test_split_matches_weights_chi_square(weights: tuple) -> None:
    counts = Counter(groups(make_config(weights=weights)))
    observed = [counts[f"arm{i}"] for i in range(len(weights))]
    assert sum(observed) == N
    expected = np.array(weights) / sum(weights) * N
    assert chisquare(observed, expected).pvalue > 0.001


def test_two_salts_are_independent() -> None:
    a = groups(make_config(salt="alpha"))
    b = groups(make_config(salt="beta"))
    table = Counter(zip(a, b, strict=True))
    matrix = [[table[("arm0", "arm0")], table[("arm0", "arm1")]],
              [table[("arm1", "arm0")], table[("arm1", "arm1")]]]  # fmt: skip
    assert chi2_contingency(matrix).pvalue > 0.001
    assert a != b


def test_growing_traffic_keeps_everyone_in_their_arm() -> None:
    small, large, full = (groups(make_config(traffic=t)) for t in (10, 40, 100))
    inside = [i for i, g in enumerate(small) if g != "default"]
    assert 0.08 * N < len(inside) < 0.12 * N
    assert all(large[i] == small[i] for i in inside)
    assert all(full[i] == large[i] for i, g in enumerate(large) if g != "default")
    assert "default" not in full
    share = Counter(large)["default"] / N
    assert 0.57 < share < 0.63


def test_traffic_zero_and_non_running_experiments_serve_the_default() -> None:
    for cfg in (make_config(traffic=0), make_config(status="draft"), make_config(status="stopped")):
        a = Assigner(cfg).assign(5)
        assert (a.experiment, a.exp_group, a.model) == (None, "default", "popular")


@pytest.mark.postgres
def test_sql_expression_reproduces_assignment(pg_engine: Engine) -> None:
    cfg = make_config(salt="it's-salty", traffic=70, weights=(20, 30, 50))
    ids = [*range(0, 3000, 3), 10**15 + 7]
    groups = sql_groups(pg_engine, cfg, ids)
    assigner = Assigner(cfg)
    assert groups == {uid: assigner.assign(uid).exp_group for uid in ids}
    assert set(groups.values()) == {"arm0", "arm1", "arm2", "default"}


def test_qa_users_get_their_forced_arm_and_nobody_else_moves() -> None:
    plain = Assigner(make_config(traffic=50))
    # users the hash puts in arm0, in arm1 and outside the experiment
    by_group: dict[str, list[int]] = {}
    for u in range(200):
        by_group.setdefault(plain.assign(u).exp_group, []).append(u)
    a0, a1, out = by_group["arm0"][0], by_group["arm1"][0], by_group["default"][0]
    forced = Assigner(make_config(traffic=50, qa_users=f"{{arm1: [{a0}, {out}], arm0: [{a1}]}}"))
    assert [forced.assign(u).exp_group for u in (a0, out, a1)] == ["arm1", "arm1", "arm0"]
    assert all(forced.assign(u).qa for u in (a0, out, a1))
    others = [u for u in range(N) if u not in (a0, out, a1)]
    assert [forced.assign(u) for u in others] == [plain.assign(u) for u in others]
    assert not any(forced.assign(u).qa for u in others)
    stopped = Assigner(make_config(status="stopped", qa_users=f"{{arm1: [{a0}]}}"))
    assert stopped.assign(a0).exp_group == "default" and not stopped.assign(a0).qa


@pytest.mark.postgres
def test_sql_expression_reproduces_forced_qa_arms(pg_engine: Engine) -> None:
    cfg = make_config(traffic=30, qa_users="{arm0: [1, 5, 9], arm1: [2, 10000000000]}")
    ids = [*range(0, 600, 1), 10**10]
    assigner = Assigner(cfg)
    assert sql_groups(pg_engine, cfg, ids) == {uid: assigner.assign(uid).exp_group for uid in ids}


def sql_groups(engine: Engine, config: ExperimentsConfig, ids: list[int]) -> dict[int, str]:
    """exp_group of each id as PostgreSQL computes it from `assignment_sql`."""
    expr = assignment_sql(config, "u.user_id")
    with engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT u.user_id, {expr} FROM unnest(CAST(:ids AS bigint[])) AS u(user_id)"),
            {"ids": ids},
        ).all()
    return {uid: g for uid, g in rows}


def test_cli_assign_prints_experiment_group_and_model(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(
        "default_model: popular\nexperiments:\n  - {name: e, status: running, salt: s,"
        " traffic: 100, arms: [{name: only, model: random, weight: 1}]}\n"
    )
    result = CliRunner().invoke(app, ["assign", "3", "14", "--config", str(path)])
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.output.splitlines() if "│ 3 " in ln or "│ 14 " in ln]
    assert len(lines) == 2 and all("only" in ln and "random" in ln for ln in lines)


def test_cli_assign_reports_invalid_file_with_line(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("default_model: popular\nexperiments:\n  - name: e\n    status: maybe\n")
    result = CliRunner().invoke(app, ["assign", "1", "--config", str(path)])
    assert result.exit_code == 2
    assert "line 4: experiments[0].status" in result.output


def test_cli_assign_never_reads_the_installed_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["assign"])
    assert result.exit_code == 2
    assert "no experiments/experiments.yaml under" in result.output
    assert "--config FILE" in result.output
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "experiments.yaml").write_text("default_model: popular\n")
    result = CliRunner().invoke(app, ["assign"])
    assert result.exit_code == 0, result.output
    assert f"{tmp_path / 'experiments' / 'experiments.yaml'}: valid" in result.output


SIDE_BY_SIDE = """default_model: popular
experiments:
  - name: ab
    status: running
    salt: "ab-1"
    traffic: 50
    arms:
      - {name: control, model: popular, weight: 50}
      - {name: test, model: random, weight: 50}
  - name: il
    status: running
    salt: "il-1"
    traffic: 100
    design: interleaving
    arms:
      - {name: control, model: popular}
      - {name: test, model: random}
"""


def test_an_interleaving_experiment_takes_the_users_the_first_leaves() -> None:
    """Everyone the A/B experiment does not take is interleaved, with both arms' models."""
    config = parse_config(SIDE_BY_SIDE).config
    assigner = Assigner(config)
    found = Counter()
    for u in range(N):
        a = assigner.assign(u)
        found[(a.experiment, a.exp_group)] += 1
        in_ab = int(hashlib.md5(f"{u}ab-1".encode()).hexdigest(), 16) % 10_000 < 5000
        assert (a.experiment == "ab") == in_ab
        if a.experiment == "il":
            assert a.teams == (("control", "popular"), ("test", "random"))
    assert set(found) == {("ab", "control"), ("ab", "test"), ("il", "interleaved")}
    assert (
        chisquare(
            [found[("ab", "control")] + found[("ab", "test")], found[("il", "interleaved")]]
        ).pvalue
        > 1e-4
    )


@pytest.mark.postgres
def test_sql_expression_names_the_interleaved_group(pg_engine: Engine) -> None:
    config = parse_config(SIDE_BY_SIDE).config
    ids = list(range(0, 2000, 7))
    groups = sql_groups(pg_engine, config, ids)
    assigner = Assigner(config)
    assert groups == {uid: assigner.assign(uid).exp_group for uid in ids}
    assert "interleaved" in groups.values()
