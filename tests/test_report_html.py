"""The HTML report is self-contained and leads with the verdict on the decision metric, then
the health checks, then the effect over time; Chromium renders it and we read the page."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from feedlab.analysis.online.results import Report
from feedlab.analysis.report.html import render_html
from feedlab.analysis.report.serialize import to_json

from tests.conftest import IN_CI
from tests.support.screenshot import CHROMIUM_FLAGS, demo_report

pytestmark = pytest.mark.slow  # the demo experiment takes ~10 s to build and analyse


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Report:
    return demo_report(f"sqlite:///{tmp_path_factory.mktemp('r') / 'demo.db'}")


def test_html_order_verdict_health_effect_then_details(report):
    html = render_html(report)
    body = html.split("<body>", 1)[1]
    order = [
        body.index('<h2 id="verdict">'),
        body.index('<h2 id="health">'),
        body.index('<h2 id="effect-over-time">'),
        body.index("<h2>Phase"),
    ]
    assert order == sorted(order)
    assert body.index('id="srm-banner"') < order[2]
    assert "SAMPLE RATIO MISMATCH" in body
    assert re.search(r'class="verdict win"><b>WIN</b>.*decision metric <code>hitrate</code>', body)
    assert 'class="verdict invalid"' in body
    assert "sample ratio ok" in body  # the clean phase says so too
    assert "per-day difference" in body and "cumulative difference" in body
    assert "Brien-Fleming boundary" in body
    assert "Capping off" in body and "credited once" in body
    assert "Guardrails" in body and "latency" in body
    for phase in report.phases:
        assert phase.config_version in body
        assert phase.salt in body
    # table headers: no arm name doubles as a column name
    assert "<th>method</th>" in body and "<th>test</th>" not in body


def test_html_needs_no_network(report):
    html = render_html(report)
    assert not re.search(r"https?://|//cdn|<script|<link|<img|@import|url\(", html)


def test_json_is_strict_and_complete(report):
    data = json.loads(to_json(report))  # allow_nan=False inside: NaN became null
    phase = data["phases"][0]
    assert {"health", "comparisons", "guardrails", "effects", "timings_s"} <= set(phase)
    assert phase["comparisons"][0]["metrics"][0]["mann_whitney"]["ci_low"] is None


def _chromium() -> str:
    exe = shutil.which("chromium")
    if exe is None:
        if IN_CI:
            pytest.fail("CI=true and chromium is not installed", pytrace=False)
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    return exe


def test_chromium_renders_verdict_then_health_then_effect_plot(report, tmp_path: Path):
    page = tmp_path / "report.html"
    page.write_text(render_html(report), encoding="utf-8")
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [
                _chromium(),
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                "--dump-dom",
                page.as_uri(),
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    text = re.sub(r"<[^>]+>", " ", dom)
    verdict = text.index("Verdict")
    health = text.index("Health checks")
    effect = text.index("Effect over time")
    assert verdict < health < effect
    assert re.search(r"WIN\s+· phase \w+\s+· decision metric\s+hitrate", text)
    assert "sample ratio MISMATCH" in text[health:effect]
    # the effect plot is a rendered SVG with a line per series, inside the effect section
    section = dom[dom.index('id="effect-over-time"') : dom.index("<h2>Phase")]
    assert section.count("<svg") >= 2 and "<polyline" in section
