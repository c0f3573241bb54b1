"""Headless Chromium (Debian's `chromium`) for tests that check what a person sees in a browser.

Pages are loaded with every address but loopback unreachable (a dead proxy, no DNS), so a page
that needs a CDN renders as it would on a machine with no network. The rendered DOM, after the
page's scripts ran, comes back as text.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

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
