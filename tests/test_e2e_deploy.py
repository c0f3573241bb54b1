"""The deployment files agree with the code: every `feedlab` command line in docker-compose.yml
parses against the real CLI, the compose experiments config passes the real validator and
points at the compose model services, and the Dockerfile installs what pyproject.toml declares.
(No Docker engine here: `docker build`/`up` themselves are not exercised by the suite.)"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import click
import pytest
import typer.main
import yaml
from feedlab.experiments.config import HttpModel, load_config

from feedlab.cli import app

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def feedlab_lines(service: dict) -> list[list[str]]:
    """Every `feedlab ...` invocation of a service's command (list form or `sh -c` script)."""
    command = service.get("command", [])
    if command[:2] == ["sh", "-c"]:
        script = command[2].replace("$$", "$")
        parts = re.split(r"&&|;|\bthen\b|\bfi\b", script)
        return [shlex.split(p.strip()) for p in parts if p.strip().startswith("feedlab ")]
    return [command] if command[:1] == ["feedlab"] else []


def parse_cli(argv: list[str]) -> click.Context:
    """Parse a command line with the real `feedlab` CLI without running it."""
    group = typer.main.get_command(app)
    assert argv[1] in group.commands, f"`feedlab {argv[1]}` is not a registered command"
    return group.commands[argv[1]].make_context(argv[1], argv[2:])


def test_services_start_in_dependency_order() -> None:
    assert set(SERVICES) == {
        "postgres",
        "redis",
        "trainer",
        "model-control",
        "model-test",
        "gateway",
        "gateway-2",
    }
    for name in ("postgres", "redis", "model-control", "model-test", "gateway", "gateway-2"):
        assert SERVICES[name]["healthcheck"]["test"], name
    for name in ("model-control", "model-test"):
        deps = SERVICES[name]["depends_on"]
        assert deps["trainer"]["condition"] == "service_completed_successfully"
    for name in ("gateway", "gateway-2"):
        gateway_deps = SERVICES[name]["depends_on"]
        assert {k: v["condition"] for k, v in gateway_deps.items()} == {
            "postgres": "service_healthy",
            "redis": "service_healthy",
            "model-control": "service_healthy",
            "model-test": "service_healthy",
        }
    assert SERVICES["trainer"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert SERVICES["trainer"]["restart"] == "no"
    assert {"pgdata", "artifacts", "spool"} <= set(COMPOSE["volumes"])
    assert "pgdata:/var/lib/postgresql/data" in SERVICES["postgres"]["volumes"]
    for name in ("trainer", "model-control", "model-test"):
        assert "artifacts:/app/artifacts" in SERVICES[name]["volumes"]


def test_gateway_environment_comes_from_the_host() -> None:
    env = SERVICES["gateway"]["environment"]
    assert env["FEEDLAB_DATABASE_URL"].startswith("postgresql+psycopg2://")
    assert "@postgres:5432/" in env["FEEDLAB_DATABASE_URL"]
    assert env["FEEDLAB_ADMIN_TOKEN"] == "${FEEDLAB_ADMIN_TOKEN:-}"


def test_gateway_replicas_share_redis_and_nothing_else() -> None:
    """Online state through the one Redis service; each replica its own port and spool."""
    replicas = [SERVICES["gateway"], SERVICES["gateway-2"]]
    assert {r["environment"]["FEEDLAB_REDIS_URL"] for r in replicas} == {"redis://redis:6379/0"}
    assert replicas[0]["command"] == replicas[1]["command"]
    spools = [next(v for v in r["volumes"] if v.endswith(":/app/spool")) for r in replicas]
    assert len(set(spools)) == 2
    assert len({r["ports"][0].split(":")[0] for r in replicas}) == 2


@pytest.mark.parametrize("name", ["trainer", "model-control", "model-test", "gateway", "gateway-2"])
def test_every_feedlab_command_line_parses(name: str) -> None:
    lines = feedlab_lines(SERVICES[name])
    assert lines, f"{name} runs no feedlab command"
    for argv in lines:
        parse_cli(argv)  # raises click.UsageError on an unknown command or option


def test_trainer_seeds_then_trains_both_arms() -> None:
    commands = [argv[1:3] for argv in feedlab_lines(SERVICES["trainer"])]
    assert commands == [
        ["init-db"],
        ["demo-data", "--spec-out"],
        ["train", "control"],
        ["train", "test"],
    ]


def test_compose_experiments_route_both_arms_to_the_model_services() -> None:
    config_path = SERVICES["gateway"]["command"][
        SERVICES["gateway"]["command"].index("--config") + 1
    ]
    loaded = load_config(ROOT / config_path)
    running = [e for e in loaded.config.experiments if e.status == "running"]
    assert running
    for model in loaded.config.model_names():
        spec = loaded.config.model_spec(model)
        assert isinstance(spec, HttpModel), model
        host, port = spec.url.removeprefix("http://").split(":")
        service = SERVICES[host]
        assert service["command"][2] == model
        assert service["command"][service["command"].index("--port") + 1] == port


def test_dockerfile_installs_the_project_with_the_pinned_torch() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pin = next(d for d in project["project"]["dependencies"] if d.startswith("torch"))
    assert f"pip install {pin} --index-url https://download.pytorch.org/whl/cpu" in dockerfile
    for folder in project["tool"]["setuptools"]["package-dir"].values():
        assert f"COPY {folder} ./{folder}" in dockerfile, folder
    assert "RUN pip install ." in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "*.db", "artifacts", "shared", "data"} <= set(ignored)
