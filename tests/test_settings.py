"""Settings: one typed reader of the `FEEDLAB_*` environment, every variable documented."""

from __future__ import annotations

import ast
import pickle
import re
import subprocess
from pathlib import Path

import pytest
from feedlab.gateway.settings import Settings
from pydantic import ValidationError

from feedlab.settings import DatabaseSettings, database_url
from tests.support.layout import REPO, product_files


def env_name(settings: type[DatabaseSettings], field: str) -> str:
    alias = settings.model_fields[field].validation_alias
    if alias is not None:
        return next(c for c in alias.choices if isinstance(c, str) and c.startswith("FEEDLAB_"))
    return f"FEEDLAB_{field.upper()}"


def test_every_setting_is_in_the_readme_table() -> None:
    documented = set(re.findall(r"^\| `(FEEDLAB_\w+)` \|", (REPO / "README.md").read_text(), re.M))
    names = {env_name(Settings, f) for f in Settings.model_fields}
    assert names <= documented, f"undocumented: {sorted(names - documented)}"
    assert {"FEEDLAB_EXPERIMENTS", "FEEDLAB_WATCH_CONFIG", "FEEDLAB_FEED_SYNC_INTERVAL"} <= names


def test_every_feedlab_variable_named_anywhere_is_in_the_readme() -> None:
    """Also those only the tests, the benchmarks or the deployment files read."""
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    named = set()
    for name in tracked:
        path = REPO / name
        if path.is_file() and path.suffix in {".py", ".yml", ".yaml", ".md", ""}:
            named |= set(re.findall(r"FEEDLAB_[A-Z_]*[A-Z]", path.read_text(errors="ignore")))
    readme = (REPO / "README.md").read_text()
    assert {"FEEDLAB_DATABASE_URL", "FEEDLAB_TEST_POSTGRES_URL"} <= named
    assert sorted(n for n in named if f"`{n}`" not in readme) == []


def test_environment_is_read_and_typed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FEEDLAB_DATABASE_URL", "sqlite:///elsewhere.db")
    monkeypatch.setenv("FEEDLAB_EXPERIMENTS", str(tmp_path / "exp.yaml"))
    monkeypatch.setenv("FEEDLAB_WATCH_CONFIG", "0")
    monkeypatch.setenv("FEEDLAB_FEED_SYNC_INTERVAL", "0.25")
    monkeypatch.setenv("FEEDLAB_ADMIN_TOKEN", "")
    s = Settings()
    assert s.database_url == "sqlite:///elsewhere.db" == database_url()
    assert s.config_path == tmp_path / "exp.yaml"
    assert s.watch_config is False
    assert s.feed_sync_interval == 0.25
    assert s.admin_token is None  # empty means unset: admin disabled
    # flags (keyword arguments) win over the environment
    assert Settings(config_path=tmp_path / "b.yaml").config_path == tmp_path / "b.yaml"
    assert database_url("sqlite:///flag.db") == "sqlite:///flag.db"


def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDLAB_EXPOSURE_BATCH_SIZE", "lots")
    with pytest.raises(ValidationError, match="exposure_batch_size"):
        Settings()


def test_settings_travel_to_worker_processes_as_an_object() -> None:
    s = Settings(spool_dir=Path("/tmp/spool"), feed_sync_interval=0.1)
    assert pickle.loads(pickle.dumps(s)) == s


def _reads_environment(node: ast.AST) -> bool:
    """`os.getenv(...)`, `os.environ[...]`, `os.environ.get(...)` or `os.environ.update(...)`."""
    if isinstance(node, ast.Attribute) and node.attr == "getenv":
        return isinstance(node.value, ast.Name) and node.value.id == "os"
    if isinstance(node, ast.Subscript | ast.Attribute):
        target = node.value
        is_environ = isinstance(target, ast.Attribute) and target.attr == "environ"
        return is_environ and (isinstance(node, ast.Subscript) or node.attr in {"get", "update"})
    return False


def test_nothing_else_in_the_product_reads_the_environment() -> None:
    """Settings are the one reader; passing `os.environ` on to a child process is allowed."""
    offenders = [
        f"{path.relative_to(REPO)}:{node.lineno}"
        for path in product_files()
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if _reads_environment(node)
    ]
    assert not offenders, offenders


def test_serve_refuses_bad_settings_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from feedlab.cli import app

    monkeypatch.setenv("FEEDLAB_WATCH_CONFIG", "maybe")
    monkeypatch.setenv("FEEDLAB_EXPOSURE_BATCH_SIZE", "0")
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2
    assert "FEEDLAB_WATCH_CONFIG (watch_config): Input should be a valid boolean" in result.output
    assert "FEEDLAB_EXPOSURE_BATCH_SIZE (exposure_batch_size)" in result.output
