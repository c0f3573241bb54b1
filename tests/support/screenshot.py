"""Render a demo report (synthetic experiment with a deliberate SRM in one phase) to HTML and
screenshot it with headless Chromium:

    .venv/bin/python -m tests.support.screenshot [--out-dir DIR] [--chromium chromium]

(DIR defaults to /tmp/feedlab_report, outside the repository.)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from feedlab.analysis.online.analyze import Options, analyze
from feedlab.analysis.online.results import Report
from feedlab.analysis.report.html import render_html
from feedlab.storage.schema import exposures
from sqlalchemy import update

from tests.support.browser import CHROMIUM_FLAGS
from tests.support.db import migrated
from tests.support.synthetic import PhaseSpec, config_yaml, insert_phase, store_config


def demo_report(db_url: str) -> Report:
    """Two phases: a clean 50/50 phase with a real lift, then a phase whose users do not
    match the configured split (SRM)."""
    engine = migrated(db_url)
    t0 = datetime(2024, 5, 1)
    with engine.begin() as conn:
        insert_phase(
            conn,
            "bert_vs_catboost",
            PhaseSpec(
                weights={"control": 50, "test": 50},
                like_prob={"control": 0.22, "test": 0.27},
                start=t0,
                days=7,
                users=1500,
                salt="bert-vs-catboost-1",
                latency_ms={"control": 3.0, "test": 4.5},
            ),
            seed=1,
        )
        skewed = insert_phase(
            conn,
            "bert_vs_catboost",
            PhaseSpec(
                weights={"control": 60, "test": 40},
                like_prob={"control": 0.22, "test": 0.24},
                start=t0 + timedelta(days=7),
                days=4,
                users=1000,
                first_user=100_000,
                salt="bert-vs-catboost-2",
            ),
            seed=2,
            pre_period=False,
        )
        claimed = store_config(
            conn,
            config_yaml("bert_vs_catboost", "bert-vs-catboost-2", {"control": 50, "test": 50}),
            t0 + timedelta(days=7),
        )
        conn.execute(
            update(exposures)
            .where(exposures.c.config_version == skewed)
            .values(config_version=claimed)
        )
    report = analyze(engine, "bert_vs_catboost", options=Options(n_boot=500))
    engine.dispose()
    return report


def _chromium(html_path: Path, action: str, chromium: str) -> str:
    """Run headless Chromium on the page with one action flag; its stdout."""
    exe = shutil.which(chromium)
    if exe is None:
        raise SystemExit(f"{chromium} not found (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [
                exe,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                action,
                "--window-size=1200,2000",
                html_path.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
    return done.stdout


def screenshot(html_path: Path, png_path: Path, chromium: str = "chromium") -> None:
    _chromium(html_path, f"--screenshot={png_path}", chromium)


def dump_dom(html_path: Path, chromium: str = "chromium") -> str:
    """The page's DOM as Chromium parsed and laid it out (what a browser shows)."""
    return _chromium(html_path, "--dump-dom", chromium)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", type=Path, default=Path("/tmp/feedlab_report"))
    ap.add_argument("--chromium", default="chromium")
    args = ap.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        report = demo_report(f"sqlite:///{Path(tmp) / 'demo.db'}")
    html = args.out_dir / "analysis_report.html"
    html.write_text(render_html(report), encoding="utf-8")
    png = args.out_dir / "analysis_report.png"
    screenshot(html, png, args.chromium)
    print(f"report: {html}\nscreenshot: {png}")


if __name__ == "__main__":
    main()
