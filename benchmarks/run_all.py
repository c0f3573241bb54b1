"""`make bench`: run every benchmark script in this folder, one after another, and print their
tables. Scripts run with their default settings; a failing one is reported and the rest go on
(the exit code is non-zero if any failed). Only loopback servers are started, and each script
bounds its own run time.

    .venv/bin/python benchmarks/run_all.py            # all of them
    .venv/bin/python benchmarks/run_all.py serving    # only those whose name contains 'serving'
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scripts(selected: list[str]) -> list[Path]:
    found = sorted(
        p for p in HERE.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_")
    )
    return [p for p in found if not selected or any(s in p.stem for s in selected)]


def main() -> int:
    todo = scripts(sys.argv[1:])
    if not todo:
        print(f"no benchmark scripts matching {sys.argv[1:]} in {HERE}")
        return 1
    results: list[tuple[str, int, float]] = []
    for script in todo:
        print(f"\n{'=' * 100}\n{script.name}\n{'=' * 100}", flush=True)
        started = time.monotonic()
        code = subprocess.run([sys.executable, str(script)], cwd=HERE.parent).returncode
        results.append((script.name, code, time.monotonic() - started))
    print(f"\n{'benchmark':<32}{'result':>10}{'minutes':>10}")
    for name, code, seconds in results:
        print(f"{name:<32}{'ok' if code == 0 else f'exit {code}':>10}{seconds / 60:>10.1f}")
    return int(any(code for _, code, _ in results))


if __name__ == "__main__":
    sys.exit(main())
