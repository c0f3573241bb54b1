"""QA traffic never reaches the analysis: the README's hand-made requests, sent to a real
gateway (uvicorn) during an experiment, leave `feedlab analyze` unchanged."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from feedlab.analysis.online.analyze import Options, analyze
from feedlab.experiments.assignment import Assigner
from feedlab.experiments.config import load_config
from feedlab.gateway.app import create_app
from feedlab.gateway.settings import Settings
from feedlab.storage.schema import exposures
from sqlalchemy import Engine, func, select

from tests.support.db import migrated
from tests.support.gateway import ServerThread, seed_world, wait_until, write_config
from tests.support.reports import comparable

README = Path(__file__).resolve().parents[1] / "README.md"
START = datetime(2024, 2, 1)


def readme_qa_calls() -> list[list[str]]:
    """The curl commands of the README's QA block, as argument lists."""
    text = README.read_text(encoding="utf-8")
    block = text.split("<!-- qa-curl -->", 2)[1]
    return [shlex.split(line) for line in block.splitlines() if line.startswith("curl ")]


def _send(url: str, args: list[str]) -> httpx.Response:
    headers = {}
    target = ""
    it = iter(args[1:])
    for a in it:
        if a == "-H":
            name, value = next(it).split(":", 1)
            headers[name.strip()] = value.strip()
        else:
            target = a
    return httpx.get(target.replace("http://127.0.0.1:8000", url), headers=headers, timeout=10)


def _report(engine) -> dict:
    return comparable(analyze(engine, "exp1", options=Options(n_boot=100)))


@contextmanager
def _serve(sqlite_url: str, config: Path, spool: Path) -> Iterator[tuple[str, Engine]]:
    """A real gateway (uvicorn) on a seeded SQLite world: its URL and the engine."""
    engine = migrated(sqlite_url)
    seed_world(engine)
    settings = Settings(database_url=sqlite_url, config_path=config, spool_dir=spool)
    with ServerThread(create_app(settings)) as server:
        yield server.url, engine
    engine.dispose()


@pytest.fixture
def gateway(sqlite_url: str, tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    with _serve(sqlite_url, write_config(tmp_path / "exp.yaml"), tmp_path / "spool") as served:
        yield served


def _hashed_arm(config: Path, user: int) -> str:
    return Assigner(load_config(config).config).assign(user).exp_group


def test_readme_curl_calls_are_qa_traffic_and_change_nothing(gateway):
    calls = readme_qa_calls()
    assert len(calls) >= 3 and all("X-Feedlab-QA: 1" in c for c in calls)
    url, engine = gateway
    sent = 0
    for day in range(3):
        for user in range(1, 11):
            at = START + timedelta(days=day, hours=user)
            r = httpx.get(
                f"{url}/post/recommendations/",
                params={"id": user, "time": at.isoformat()},
                timeout=10,
            )
            assert r.status_code == 200, r.text
            sent += 1
            post = r.json()["recommendations"][0]["id"]
            if (user + day) % 2:
                like = {
                    "timestamp": (at + timedelta(minutes=3)).isoformat(),
                    "user_id": user,
                    "post_id": post,
                    "action": "like",
                }
                assert httpx.post(f"{url}/feed", json=like, timeout=10).status_code == 200

    def written() -> int:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(exposures)).scalar_one()

    assert wait_until(lambda: written() == sent, timeout=30)
    before = _report(engine)
    for call in calls:
        assert _send(url, call).status_code == 200
    assert wait_until(lambda: written() == sent + len(calls), timeout=30)
    after = _report(engine)
    with engine.connect() as conn:
        qa = conn.execute(select(func.count()).where(exposures.c.qa.is_(True))).scalar_one()
    assert qa == len(calls)
    phase = after["phases"][0]
    assert phase["health"]["qa_exposures_excluded"] == len(calls)
    phase["health"]["qa_exposures_excluded"] = 0
    assert after == before


def test_qa_users_of_the_yaml_get_their_forced_arm_and_are_never_analysed(
    sqlite_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "exp.yaml")
    user = next(u for u in range(1, 11) if _hashed_arm(config, u) == "control")
    text = config.read_text().replace("models:", f"    qa_users: {{test: [{user}]}}\nmodels:")
    config.write_text(text)
    with _serve(sqlite_url, config, tmp_path / "spool") as (url, engine):
        for day in range(2):
            for u in (user, user % 10 + 1):
                at = (START + timedelta(days=day, hours=u)).isoformat()
                r = httpx.get(f"{url}/post/recommendations/", params={"id": u, "time": at})
                assert r.status_code == 200, r.text
                if u == user:
                    assert r.json()["exp_group"] == "test"

        def logged() -> list[tuple]:
            q = select(exposures.c.user_id, exposures.c.exp_group, exposures.c.qa)
            with engine.connect() as conn:
                return sorted(conn.execute(q).all())

        assert wait_until(lambda: len(logged()) == 4, timeout=30)
        rows = logged()
        assert [r for r in rows if r[0] == user] == [(user, "test", True)] * 2
        assert not any(qa for u, _, qa in rows if u != user)
        phase = _report(engine)["phases"][0]
        assert phase["health"]["qa_exposures_excluded"] == 2
        assert sum(phase["users"].values()) == 1


def test_the_qa_header_must_be_a_boolean(gateway):
    url, _ = gateway
    r = httpx.get(
        f"{url}/post/recommendations/",
        params={"id": 1},
        headers={"X-Feedlab-QA": "maybe"},
        timeout=10,
    )
    assert r.status_code == 422
    assert re.search(r"x-feedlab-qa", r.text, re.I)
