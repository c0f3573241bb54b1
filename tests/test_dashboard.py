"""`feedlab dashboard`: the experiment list (phases, status, traffic) and each experiment's
report, checked as data and in headless Chromium the way an analyst clicks through it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from urllib.parse import urljoin

import httpx
import pytest
from feedlab.analysis.dashboard.app import CACHE_SECONDS, Pages, create_dashboard
from feedlab.analysis.dashboard.overview import list_experiments
from feedlab.analysis.online.analyze import analyze
from sqlalchemy import Engine

from feedlab.demo import EXPERIMENT
from tests.support.browser import rendered_dom, report_links, verdict_shown
from tests.support.db import migrated
from tests.support.gateway import ServerThread
from tests.support.synthetic import PhaseSpec, insert_phase, store_config

T0 = datetime(2024, 5, 1)
DRAFT = """\
default_model: control
experiments:
  - name: next_idea
    status: draft
    salt: next
    traffic: 10
    arms:
      - {name: control, model: control, weight: 1}
      - {name: test, model: control, weight: 1}
models:
  control: {backend: inprocess}
"""


def add_phase(engine: Engine, *, first_user: int, start: datetime, salt: str) -> str:
    spec = PhaseSpec(
        weights={"control": 50, "test": 50},
        like_prob={"control": 0.15, "test": 0.30},
        start=start,
        users=400,
        first_user=first_user,
        salt=salt,
    )
    with engine.begin() as conn:
        return insert_phase(conn, EXPERIMENT, spec, seed=first_user)


@pytest.fixture
def world(sqlite_url: str) -> Iterator[tuple[str, Engine]]:
    engine = migrated(sqlite_url)
    add_phase(engine, first_user=1, start=T0, salt="s1")
    with engine.begin() as conn:
        store_config(conn, DRAFT, T0 + timedelta(days=5))
    yield sqlite_url, engine
    engine.dispose()


def test_list_shows_phases_status_and_traffic(world: tuple[str, Engine]) -> None:
    _, engine = world
    demo, draft = list_experiments(engine)
    assert (demo.name, demo.status, demo.traffic) == (EXPERIMENT, "running", 100.0)
    (phase,) = demo.phases
    assert phase.users == 400 and phase.exposures == demo.exposures == 400 * 4
    assert {a.name: (a.users, a.weight) for a in phase.arms} == {
        "control": (200, 50.0),
        "test": (200, 50.0),
    }
    assert (draft.name, draft.status, draft.traffic, draft.phases) == (
        "next_idea",
        "draft",
        10.0,
        [],
    )


def test_pages_are_cached_for_a_minute(world: tuple[str, Engine]) -> None:
    _, engine = world
    now = [0.0]
    pages = Pages(engine, timer=lambda: now[0])
    first = pages.report(EXPERIMENT)
    listed = pages.experiments()
    add_phase(engine, first_user=10_000, start=T0 + timedelta(days=4), salt="s2")
    now[0] = CACHE_SECONDS - 1
    assert pages.report(EXPERIMENT) is first
    assert len(pages.experiments()[0].phases) == len(listed[0].phases) == 1
    now[0] = CACHE_SECONDS + 1
    assert pages.report(EXPERIMENT).count('class="verdict') > first.count('class="verdict')
    assert len(pages.experiments()[0].phases) == 2


@pytest.mark.slow
def test_analyst_opens_the_demo_experiment_and_reads_the_verdict(
    world: tuple[str, Engine],
) -> None:
    url, engine = world
    expected = analyze(engine, EXPERIMENT).phases[0].comparisons[0].verdict.status
    with ServerThread(create_dashboard(url)) as server:
        home = server.url + "/"
        listing = rendered_dom(home)
        assert "next_idea" in listing and "draft" in listing
        links = report_links(listing)
        assert set(links) == {EXPERIMENT}  # the draft has no report yet
        report = rendered_dom(urljoin(home, links[EXPERIMENT]))
    assert verdict_shown(report) == expected.upper() == "WIN"


def test_unknown_experiment_is_404_naming_it(world: tuple[str, Engine]) -> None:
    url, _ = world
    with ServerThread(create_dashboard(url)) as server:
        r = httpx.get(server.url + "/experiments/nope", timeout=10)
    assert r.status_code == 404 and "nope" in r.json()["detail"]
