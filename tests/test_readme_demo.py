"""`benchmarks/readme_demo.py` (the README's sample output against a fresh demo run): what it
masks as run-to-run noise and what it must catch, on saved outputs (the run itself takes
minutes and is done by the script)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "readme_demo.py"
spec = importlib.util.spec_from_file_location("readme_demo", SCRIPT)
assert spec is not None and spec.loader is not None
readme_demo = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme_demo)


def readme_sample() -> str:
    text = readme_demo.README.read_text()
    start, end = readme_demo.sample_block(text)
    return text[start:end]


def check(log: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--log", str(log)], capture_output=True, text=True
    )


def test_timings_paths_ports_tokens_and_versions_are_noise(tmp_path: Path) -> None:
    sample = readme_sample()
    assert "== 6/6" in sample and "report:" in sample
    rerun = (
        sample.replace("127.0.0.1:8000", "127.0.0.1:40123")
        .replace("demo took ", "demo took 1")  # 7.4 min -> 17.4 min
        .replace(" ms │", "1 ms │")
    )
    rerun = "\n" + rerun.replace("\n", "\n\n")  # blank lines between steps are not compared
    log = tmp_path / "demo.out"
    log.write_text(rerun)
    result = check(log)
    assert result.returncode == 0, result.stdout
    assert "equals a fresh run" in result.stdout


def test_a_changed_result_is_caught(tmp_path: Path) -> None:
    sample = readme_sample()
    first_users = sample.index("users {")
    changed = sample[:first_users] + sample[first_users:].replace("2", "3", 1)
    assert changed != sample
    log = tmp_path / "demo.out"
    log.write_text(changed)
    result = check(log)
    assert result.returncode == 1
    assert "README sample differs" in result.stdout


def test_the_token_never_reaches_the_readme() -> None:
    shown = readme_demo.shown(
        "admin token: s3cr3t-XyZ\n  curl -H 'Authorization: Bearer s3cr3t-XyZ' u\n"
    )
    assert "s3cr3t" not in shown and shown.count("<token>") == 2
