"""Every `feedlab` command's --help reads cleanly: flags without a type beside them."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from feedlab.cli import app


def command_paths() -> list[list[str]]:
    root = typer.main.get_command(app)
    paths = []
    for name, cmd in root.commands.items():  # type: ignore[attr-defined]
        if hasattr(cmd, "commands"):  # a group: `import csv`, `train control`, ...
            paths += [[name, sub] for sub in cmd.commands]
        else:
            paths.append([name])
    return paths


def test_help_shows_no_type_beside_flags() -> None:
    paths = command_paths()
    assert ["dashboard"] in paths and ["train", "control"] in paths
    for path in paths:
        result = CliRunner().invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "<bool>" not in result.output, path
    demo = CliRunner().invoke(app, ["demo", "--help"]).output
    assert "--serve / --no-serve" in demo
