"""The repository's layout as the tests see it: where the product's source files are."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRODUCT_FOLDERS = ("feedlab", "gateway", "experiments", "models", "analysis", "storage")
"""Top-level folders that install as `feedlab` and `feedlab.<folder>`."""


def product_files() -> Iterator[Path]:
    """Every Python file that ships in the wheel."""
    for folder in PRODUCT_FOLDERS:
        yield from sorted((REPO / folder).rglob("*.py"))


def module_name(path: Path) -> str:
    """`gateway/app.py` -> `feedlab.gateway.app`; `feedlab/cli.py` -> `feedlab.cli`."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts if parts[0] == "feedlab" else ["feedlab", *parts])
