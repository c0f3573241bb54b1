"""The `feedlab` command. Each package contributes its subcommands through `register(app)`;
heavy libraries (torch, sentence-transformers, catboost) are imported inside commands only."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="feedlab",
    help="A/B experimentation platform for feed recommenders.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,  # plain help: rich mode prints a `<bool>` type beside every flag
)

COMMAND_MODULES = [
    "feedlab.storage.cli",
    "feedlab.commands",
    "feedlab.experiments.cli",
    "feedlab.gateway.cli",
    "feedlab.analysis.online.cli",
    "feedlab.analysis.dashboard.cli",
    "feedlab.models.cli",
    "feedlab.analysis.offline.cli",
]


@app.callback()
def main() -> None:
    """A/B experimentation platform for feed recommenders."""


for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


if __name__ == "__main__":
    app()
