"""Headless Chromium (Debian's `chromium`) for tests that check what a person sees in a browser.

Pages are loaded with every address but loopback unreachable (a dead proxy, no DNS), so a page
that needs a CDN renders as it would on a machine with no network. The rendered DOM, after the
page's scripts ran, comes back as text.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser

import pytest

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)
OFFLINE_FLAGS = (
    # loopback bypasses a proxy; everything else goes to a closed port and fails
    "--proxy-server=http://127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)


def chromium() -> str:
    """The browser's path; skip with the reason outside CI, fail in CI (`.ci/run` installs
    it)."""
    exe = shutil.which("chromium")
    if exe is None:
        message = "headless Chromium not installed (apt-get install -y chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return exe


def rendered_dom(url: str, *, budget_ms: int = 15_000, timeout_s: float = 120) -> str:
    """The DOM of `url` once its scripts have run (Chromium's virtual time runs `budget_ms`
    ahead, waiting on the page's own requests), with no network beyond loopback."""
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [
                chromium(),
                *CHROMIUM_FLAGS,
                *OFFLINE_FLAGS,
                f"--user-data-dir={profile}",
                f"--virtual-time-budget={budget_ms}",
                "--window-size=1366,900",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=True,
        )
    return result.stdout


class _ReportLinks(HTMLParser):
    """The dashboard list's report links by the experiment row they sit in."""

    def __init__(self) -> None:
        super().__init__()
        self.row: str | None = None
        self.links: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and a.get("data-experiment"):
            self.row = a["data-experiment"]
        if tag == "a" and "report-link" in (a.get("class") or "") and self.row:
            self.links[self.row] = a["href"] or ""


def report_links(listing: str) -> dict[str, str]:
    """Experiment name -> its report link, read from the dashboard's rendered list."""
    parser = _ReportLinks()
    parser.feed(listing)
    return parser.links


def verdict_shown(report: str) -> str:
    """The verdict word (WIN, LOSS, ...) a rendered report shows first."""
    found = re.search(r'<div class="verdict (\w+)"><b>(\w+)</b>', report)
    assert found is not None, report[:2000]
    return found.group(2)
