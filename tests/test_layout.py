"""The repository's shape: the product stands on its own (nothing in it exists only for the
tests), the wheel holds `feedlab` alone, and documents name only files that are here."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections import deque
from pathlib import Path

from tests.support.layout import PRODUCT_FOLDERS, REPO, module_name, product_files

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
MIGRATIONS = REPO / "storage" / "migrations"
"""Loaded by Alembic from their folder (storage.engine.upgrade), not imported."""


def _imported(path: Path, module: str) -> set[str]:
    """Modules `path` imports (at any depth, also inside functions) or names in a string, as
    `importlib.import_module("m")` and uvicorn's "m:attr" do."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.add(node.value.partition(":")[0])
    return found


def _unused_product_modules() -> list[str]:
    modules = {module_name(p): p for p in product_files()}
    roots = {v.partition(":")[0] for v in PYPROJECT["project"]["scripts"].values()}
    roots |= {"feedlab.__main__"}
    roots |= {module_name(p) for p in MIGRATIONS.rglob("*.py")}
    seen: set[str] = set()
    queue = deque(roots)
    while queue:
        name = queue.popleft()
        if name in seen or name not in modules:
            continue
        seen.add(name)
        parts = name.split(".")
        queue.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages
        queue.extend(_imported(modules[name], name))
    return sorted(set(modules) - seen)


def test_every_product_module_is_used_by_the_product() -> None:
    """Reachable from the `feedlab` command by imports: nothing exists only for the tests."""
    assert _unused_product_modules() == []


def test_every_product_package_is_listed_for_the_build() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {module_name(p) for f in PRODUCT_FOLDERS for p in (REPO / f).rglob("__init__.py")}
    assert found == listed


def test_the_wheel_holds_feedlab_alone_with_every_file_it_needs(tmp_path: Path) -> None:
    """Built as `pip install .` builds it in a fresh clone (offline: the build backend is
    already installed), from a copy of the tracked files, so a stale `build/` cannot leak in."""
    source = tmp_path / "src"
    for path in (p for p in _tracked() if p.is_file()):
        target = source / path.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*pip, "-w", str(tmp_path), str(source)], check=True, capture_output=True)
    [wheel] = tmp_path.glob("feedlab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"feedlab"}
    shipped = {module_name(p).replace(".", "/") for p in product_files()}
    assert {
        n.removesuffix(".py").removesuffix("/__init__") for n in names if n.endswith(".py")
    } == (shipped)
    data = [p for p in _tracked(*PRODUCT_FOLDERS) if p.suffix not in (".py", ".md")]
    assert data  # templates, the experiments configs, Alembic's script template
    for path in data:
        folder, rest = path.relative_to(REPO).parts[0], path.relative_to(REPO).parts[1:]
        inside = ("feedlab", *rest) if folder == "feedlab" else ("feedlab", folder, *rest)
        assert "/".join(inside) in names, path


DOC_NAME = re.compile(r"(?<![\w./-])((?:[\w.-]+/)*[\w.-]+\.md)\b")


def _tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "--", *patterns], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    return [REPO / line for line in out.splitlines()]


def test_every_document_named_in_the_repository_is_in_it() -> None:
    """A `*.md` named in code or docs exists, relative to the naming file or the root."""
    files = _tracked("*.py", "*.md", "*.toml", "*.yaml", "*.yml", "Makefile", "Dockerfile")
    assert files
    missing = []
    for path in files:
        for match in DOC_NAME.finditer(path.read_text()):
            name = match.group(1)
            if not ((path.parent / name).is_file() or (REPO / name).is_file()):
                missing.append(f"{path.relative_to(REPO)}: {name}")
    assert missing == []


def test_make_clean_keeps_the_users_data() -> None:
    recipe = subprocess.run(
        ["make", "-n", "clean"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert ".venv" in recipe
    for kept in ("feedlab.db", "*.db", "artifacts", "reports", "spool"):
        assert kept not in recipe.split(), kept
