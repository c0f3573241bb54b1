"""Training on too few held-out groups says so once, keeps the popular prior alone, and records
the fallback in meta.json; with enough groups the options are compared as before."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
from feedlab.models.control import config, train
from feedlab.models.ranker import POPULAR_COLUMN, ThinValidationWarning, TrainingSet

from tests.support.ranker_world import T0, world

CONFIG = config(iterations=20, step_days=2, max_cutoffs=10, text_dim=8)


@pytest.fixture(scope="module")
def thin() -> TrainingSet:
    """30 users over 60 days: a few dozen held-out (user, cutoff) groups."""
    history, catalog, profiles = world(n_users=30, n_events=2500)
    return TrainingSet(history, catalog, profiles, T0)


def test_thin_validation_warns_once_names_the_count_and_keeps_the_popular_prior(
    thin: TrainingSet, tmp_path: Path
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        meta = train(thin, tmp_path, CONFIG, progress=False)
    thin_warnings = [w for w in caught if issubclass(w.category, ThinValidationWarning)]
    assert len(thin_warnings) == 1
    groups = meta["metrics"]["valid_groups"]
    assert 0 < groups < 100
    text = str(thin_warnings[0].message)
    assert f"only {groups} validation groups" in text
    assert "fewer than 100" in text
    assert f"falling back to the popular prior ({POPULAR_COLUMN}" in text
    on_disk = json.loads((tmp_path / "meta.json").read_text())
    fallback = on_disk["metrics"]["fallback"]
    assert fallback["valid_groups"] == groups
    assert fallback["prior"] == POPULAR_COLUMN
    assert on_disk["scorer"]["prior"]["column"] == POPULAR_COLUMN
    assert on_disk["scorer"]["trees"] == 0
    assert not (tmp_path / "model.cbm").exists()


def test_the_rule_is_the_group_count(thin: TrainingSet, tmp_path: Path) -> None:
    """The same data with the threshold at its group count compares the options, silently."""
    with pytest.warns(ThinValidationWarning) as caught:
        groups = train(thin, tmp_path / "a", CONFIG, False)["metrics"]["valid_groups"]
    assert len(caught) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", ThinValidationWarning)
        at_count = replace(CONFIG, min_valid_groups=groups)
        meta = train(thin, tmp_path / "b", at_count, progress=False)
    assert meta["metrics"]["fallback"] is None
    assert meta["metrics"]["valid_groups"] == groups


def test_the_train_command_prints_the_warning_as_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from feedlab.cli import app
    from tests.support import stored_world
    from tests.support.db import migrated

    url = f"sqlite:///{tmp_path / 'thin.db'}"
    engine = migrated(url)
    history, catalog, _ = world(n_users=15, n_events=1200)  # daily cutoffs: still thin
    stored_world.store(engine, catalog, history)
    engine.dispose()
    args = ["train", "control", "--url", url, "--out", str(tmp_path / "a"), "--t0", T0.isoformat()]
    result = CliRunner().invoke(app, [*args, "--iterations", "20"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "validation groups" in line]
    assert len(lines) == 1
    assert lines[0].startswith("warning: control: only ")
    assert "falling back to the popular prior" in lines[0]
    assert "thin data: post_like_share_30d prior alone" in result.output
