"""What a new user meets first on the gateway: `/docs` and `/redoc` with no network (Swagger UI
and ReDoc come from an installed package, rendered in headless Chromium with every address but
loopback unreachable), one clear 422 per bad feed event, and config reloads that are logged and
counted whatever triggered them."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from feedlab.gateway.app import create_app
from feedlab.gateway.settings import Settings
from prometheus_client.parser import text_string_to_metric_families

from tests.support.browser import rendered_dom
from tests.support.db import migrated
from tests.support.gateway import ServerThread, seed_world, wait_until, write_config

TOKEN = "t0ken"
EVENT = {"timestamp": "2024-02-01T10:00:00", "user_id": 2, "post_id": 7, "action": "like"}


@pytest.fixture
def gateway_url(sqlite_url: str, tmp_path: Path) -> Iterator[str]:
    engine = migrated(sqlite_url)
    seed_world(engine)
    engine.dispose()
    settings = Settings(
        database_url=sqlite_url,
        config_path=write_config(tmp_path / "exp.yaml"),
        spool_dir=tmp_path / "spool",
        admin_token=TOKEN,
    )
    with ServerThread(create_app(settings)) as server:
        yield server.url


def test_doc_pages_load_nothing_from_outside(gateway_url: str) -> None:
    for page in ("/docs", "/redoc"):
        html = httpx.get(gateway_url + page, timeout=10).text
        assets = re.findall(r"""(?:src|href)=["']([^"']+)""", html)
        assert assets, page
        assert all(a.startswith("/") for a in assets), (page, assets)
        for asset in assets:
            assert httpx.get(gateway_url + asset, timeout=10).status_code == 200, asset


@pytest.mark.slow
def test_swagger_ui_renders_the_endpoint_list_offline(gateway_url: str) -> None:
    dom = rendered_dom(gateway_url + "/docs")
    paths = set(re.findall(r'data-path="([^"]+)"', dom))
    assert {"/post/recommendations/", "/feed", "/health", "/admin/reload"} <= paths, paths


@pytest.mark.slow
def test_redoc_renders_the_operations_offline(gateway_url: str) -> None:
    dom = rendered_dom(gateway_url + "/redoc")
    assert "Recommendations" in dom
    assert "/post/recommendations/" in dom


def test_a_like_for_an_unknown_post_is_422_naming_it(gateway_url: str) -> None:
    r = httpx.post(gateway_url + "/feed", json={**EVENT, "post_id": 999}, timeout=10)
    assert r.status_code == 422
    assert r.json()["message"].startswith("post_id: unknown post 999")
    batch = [EVENT, {**EVENT, "post_id": 31}, {**EVENT, "post_id": 999}]
    r = httpx.post(gateway_url + "/feed", json=batch, timeout=10)
    assert r.status_code == 422
    assert r.json()["message"] == (
        "event [1]: post_id: unknown post 31: import posts before starting the gateway; "
        "event [2]: post_id: unknown post 999: import posts before starting the gateway"
    )
    stored = httpx.post(gateway_url + "/feed", json=EVENT, timeout=10).json()
    assert stored == {"received": 1, "stored": 1, "duplicates": 0}  # nothing stored before


def test_a_bad_body_gets_one_error_per_bad_event(gateway_url: str) -> None:
    r = httpx.post(gateway_url + "/feed", json={**EVENT, "action": "share"}, timeout=10)
    assert r.json()["message"] == "action: Input should be 'view' or 'like'"
    assert [e["loc"] for e in r.json()["detail"]] == [["body", "action"]]
    bad = [EVENT, {"user_id": 1, "post_id": 2, "action": "view"}, {**EVENT, "user_id": -1}]
    r = httpx.post(gateway_url + "/feed", json=bad, timeout=10)
    assert r.status_code == 422
    assert r.json()["message"] == (
        "event [1]: timestamp: Field required; "
        "event [2]: user_id: Input should be greater than or equal to 0"
    )
    assert "list[" not in r.text and "FeedEventIn" not in r.text


def reload_counts(url: str) -> dict[tuple[str, str], float]:
    text = httpx.get(url + "/metrics", timeout=10).text
    return {
        (s.labels["source"], s.labels["outcome"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "feedlab_config_reloads"
        for s in family.samples
        if s.name == "feedlab_config_reloads_total"
    }


def test_every_reload_is_logged_at_info_and_counted_by_source_and_outcome(
    gateway_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "exp.yaml"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    caplog.set_level(logging.INFO, logger="feedlab.gateway")
    assert reload_counts(gateway_url) == {("startup", "applied"): 1}

    write_config(path, salt="s2")
    assert wait_until(lambda: reload_counts(gateway_url).get(("file", "applied")) == 1)
    path.write_text(path.read_text().replace("traffic: 100", "traffic: 250"))
    assert wait_until(lambda: reload_counts(gateway_url).get(("file", "refused")) == 1)
    assert httpx.post(gateway_url + "/admin/reload", headers=auth, timeout=30).status_code == 422
    write_config(path, salt="s3")
    assert wait_until(lambda: reload_counts(gateway_url).get(("file", "applied")) == 2)
    assert httpx.post(gateway_url + "/admin/reload", headers=auth, timeout=30).status_code == 200

    counts = reload_counts(gateway_url)
    assert counts[("admin", "refused")] == 1 and counts[("admin", "unchanged")] == 1
    info = [r.getMessage() for r in caplog.records if r.name == "feedlab.gateway"]
    assert sum("config reload (file)" in m and "applied" in m for m in info) == 2
    assert sum("config reload (file) refused" in m and "traffic" in m for m in info) == 1
    assert sum("config reload (admin) refused" in m for m in info) == 1
    assert sum("config reload (admin)" in m and "unchanged" in m for m in info) == 1
