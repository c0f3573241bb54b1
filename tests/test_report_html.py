"""The HTML report is self-contained and leads with the verdict and the SRM check."""

from __future__ import annotations

import json
import re

import pytest
from feedlab.analysis.report.html import render_html
from feedlab.analysis.report.serialize import to_json

from tests.support.screenshot import demo_report

pytestmark = pytest.mark.slow  # the demo experiment takes ~10 s to build and analyse


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    return demo_report(f"sqlite:///{tmp_path_factory.mktemp('r') / 'demo.db'}")


def test_html_shows_verdict_srm_banner_plots_and_config(report):
    html = render_html(report)
    body = html.split("<body>", 1)[1]
    # verdict and SRM banner come before any phase detail
    first_phase = body.index("<h2>Phase")
    assert body.index('id="srm-banner"') < first_phase
    assert body.index("<h2>Verdict</h2>") < first_phase
    assert "SAMPLE RATIO MISMATCH" in body
    assert re.search(r'class="verdict win"><b>WIN</b>.*beats control on HitRate', body)
    assert 'class="verdict invalid"' in body
    assert "SRM check passed" in body  # the clean phase says so too
    # a CI plot per metric per comparison + cumulative effect + sequential chart
    n_metrics = sum(len(c["metrics"]) for p in report["phases"] for c in p["comparisons"])
    assert body.count("<svg") >= n_metrics + 2
    assert "relative lift, 95% CI" in body and "cumulative to each day" in body
    assert "Brien-Fleming boundary" in body
    # guardrails and the exact config of each phase
    assert "Guardrails" in body and "latency" in body
    for phase in report["phases"]:
        assert phase["config"]["config_version"] in body
        assert phase["config"]["salt"] in body


def test_html_needs_no_network(report):
    html = render_html(report)
    assert not re.search(r"https?://|//cdn|<script|<link|<img|@import|url\(", html)


def test_json_is_strict_and_complete(report):
    data = json.loads(to_json(report))  # allow_nan=False inside: NaN became null
    phase = data["phases"][0]
    assert {"srm", "comparisons", "guardrails", "daily", "config", "timings_s"} <= set(phase)
    assert phase["comparisons"][0]["metrics"][0]["mann_whitney"]["ci_low"] is None
