"""Keep the README's sample `make demo` output true: run the demo, compare its output with the
README's sample block number by number, and optionally rewrite the block.

    .venv/bin/python benchmarks/readme_demo.py              # run the demo, diff against README
    .venv/bin/python benchmarks/readme_demo.py --write      # run it and rewrite the README block
    .venv/bin/python benchmarks/readme_demo.py --log FILE   # diff a saved `make demo` stdout
    make demo | tee demo.out; .venv/bin/python benchmarks/readme_demo.py --log demo.out --write

The demo runs with `--no-serve` in a temporary folder (its progress bars stay on the terminal;
only its standard output is compared). What differs between two runs of the same code and seed
is masked on both sides before comparing: durations and latencies, the folder, the port, the
admin token and config versions (they hash the artifacts' absolute paths). Everything else —
counts, rates, lifts, p-values, the verdict — must be equal. Exit 1 when they are not.
"""

from __future__ import annotations

import argparse
import difflib
import re
import subprocess
import sys
import tempfile
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- demo-output:start -->", "<!-- demo-output:end -->"
TOKEN_LINE = re.compile(r"(admin token: |Bearer )\S+?(?=['\s]|$)")
VOLATILE = [
    (re.compile(r"\d+(?:\.\d+)? ?(?:ms|min|s)\b"), "<time>"),
    (re.compile(r"\b[0-9a-f]{16}\b"), "<version>"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:<port>"),
    (TOKEN_LINE, r"\1<token>"),
]


def run_demo() -> str:
    """`feedlab demo --no-serve` in a temporary folder; its stdout, echoed as it comes, with
    the folder shown as `...`."""
    with tempfile.TemporaryDirectory(prefix="feedlab-demo-") as tmp:
        cmd = [sys.executable, "-m", "feedlab", "demo", "--no-serve", "--dir", tmp]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            print(line, end="", flush=True)
            lines.append(line)
        if proc.wait() != 0:
            raise SystemExit(f"the demo failed (exit {proc.returncode})")
        return in_folder("".join(lines), Path(tmp))


def in_folder(output: str, folder: Path) -> str:
    """The output with the demo's folder shown as `...`."""
    return output.replace(str(folder.resolve()), "...").replace(str(folder), "...")


def sample_block(readme: str) -> tuple[int, int]:
    """Character span of the fenced output between the README's markers."""
    start, end = readme.find(START), readme.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{README}: markers {START} ... {END} not found")
    body_start = readme.index("```text\n", start) + len("```text\n")
    body_end = readme.rindex("```", body_start, end)
    return body_start, body_end


def shown(output: str) -> str:
    """The output as the README shows it: blank lines dropped, the token not disclosed."""
    lines = [ln.rstrip() for ln in output.splitlines() if ln.strip()]
    return "\n".join(TOKEN_LINE.sub(r"\1<token>", ln) for ln in lines) + "\n"


def masked(text: str) -> list[str]:
    out = []
    for line in shown(text).splitlines():
        for pattern, replacement in VOLATILE:
            line = pattern.sub(replacement, line)
        out.append(line)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="Rewrite the README's sample block.")
    ap.add_argument("--log", type=Path, help="Use this saved demo stdout; run nothing.")
    ap.add_argument(
        "--dir", type=Path, default=Path.cwd(), help="With --log: the demo's --dir (default: .)."
    )
    args = ap.parse_args()
    fresh = in_folder(args.log.read_text(), args.dir) if args.log else run_demo()
    readme = README.read_text()
    start, end = sample_block(readme)
    if args.write:
        README.write_text(readme[:start] + shown(fresh) + readme[end:])
        print(f"\nrewrote the sample output in {README}")
        return 0
    diff = list(
        difflib.unified_diff(
            masked(readme[start:end]), masked(fresh), "README sample", "fresh run", lineterm=""
        )
    )
    n = len(masked(fresh))
    if diff:
        print(f"\nREADME sample differs from a fresh run ({len(diff)} diff lines):")
        print("\n".join(diff))
        return 1
    print(f"\nREADME sample equals a fresh run: {n} lines, every number but timings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
