"""mypy over the installed layout.

The top-level folders install as `feedlab.<folder>` (pyproject's package-dir), a mapping mypy
cannot follow; so it checks a view of symlinks laid out as the wheel is (`.mypy_cache/view`),
and errors are reported with the repository's own paths. Exit status is mypy's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VIEW = REPO / ".mypy_cache" / "view"


def build_view() -> dict[str, str]:
    """Symlink every package-dir into VIEW; return view prefix -> repository prefix."""
    mapping = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    shutil.rmtree(VIEW, ignore_errors=True)
    root = VIEW / "feedlab"
    root.mkdir(parents=True)
    prefixes = {}
    for package, folder in mapping.items():
        if package == "feedlab":
            for f in (REPO / folder).glob("*.py"):
                (root / f.name).symlink_to(f)
        else:
            sub = package.removeprefix("feedlab.")
            (root / sub).symlink_to(REPO / folder, target_is_directory=True)
        prefixes[package.replace(".", "/") + "/"] = folder + "/"
    return prefixes


def main() -> int:
    prefixes = build_view()
    mypy = Path(sys.executable).with_name("mypy")
    proc = subprocess.run(
        [str(mypy), "--config-file", str(REPO / "pyproject.toml"), "-p", "feedlab"],
        cwd=VIEW,
        capture_output=True,
        text=True,
        env={**os.environ, "MYPY_CACHE_DIR": str(REPO / ".mypy_cache")},
    )
    # longest prefix first: feedlab/gateway/ before feedlab/
    ordered = sorted(prefixes.items(), key=lambda kv: -len(kv[0]))
    for line in proc.stdout.splitlines():
        for view_prefix, repo_prefix in ordered:
            if line.startswith(view_prefix):
                line = repo_prefix + line.removeprefix(view_prefix)
                break
        print(line)
    sys.stderr.write(proc.stderr)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
