"""`feedlab demo`'s own rules, checked fast (the full demo run takes minutes and is exercised by
`make demo`; the same steps run on PostgreSQL in tests/test_e2e_experiment.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from feedlab.experiments.assignment import Assigner
from feedlab.experiments.config import InprocessModel, load_config

from feedlab.demo import MARKER, DemoError, prepare_directory, write_config


def test_a_foreign_database_is_refused_and_kept(tmp_path: Path) -> None:
    db = tmp_path / "feedlab.db"
    db.write_bytes(b"someone's data")
    with pytest.raises(DemoError, match="not created by `feedlab demo`"):
        prepare_directory(tmp_path)
    assert db.read_bytes() == b"someone's data"


def test_a_database_the_demo_made_is_rebuilt(tmp_path: Path) -> None:
    assert prepare_directory(tmp_path) == tmp_path / "feedlab.db"
    (tmp_path / "feedlab.db").write_bytes(b"old demo world")
    (tmp_path / "feedlab.db-wal").write_bytes(b"old wal")
    prepare_directory(tmp_path)
    assert not (tmp_path / "feedlab.db").exists()
    assert not (tmp_path / "feedlab.db-wal").exists()
    assert (tmp_path / MARKER).exists()


def test_demo_configs_pass_the_gateway_validator(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    ab = load_config(write_config(tmp_path / "ab.yaml", artifacts)).config
    (experiment,) = ab.experiments
    assert [(a.name, a.model, a.weight) for a in experiment.arms] == [
        ("control", "control", 50),
        ("test", "test", 50),
    ]
    spec = ab.model_spec("test")
    assert isinstance(spec, InprocessModel)
    assert spec.artifact == str(artifacts.resolve() / "test")
    aa = load_config(
        write_config(tmp_path / "aa.yaml", artifacts, experiment="aa", test="control")
    ).config
    assert {a.model for a in aa.experiments[0].arms} == {"control"}


def test_the_demo_runs_ab_and_interleaving_side_by_side_on_disjoint_users(tmp_path: Path):
    loaded = load_config(
        write_config(tmp_path / "demo.yaml", tmp_path / "artifacts", interleaving="il")
    ).config
    ab, il = loaded.experiments
    assert (ab.design, ab.traffic, il.design, il.traffic) == ("ab", 50, "interleaving", 100)
    assert [(a.name, a.model) for a in il.arms] == [("control", "control"), ("test", "test")]
    assigner = Assigner(loaded)
    taken = Counter(assigner.assign(u).experiment for u in range(4000))
    assert set(taken) == {ab.name, "il"}
    assert 1800 < taken["il"] < 2200
