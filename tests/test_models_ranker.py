"""The ranker's plumbing: columns on demand, candidate sources in order, config round trip,
and a clear refusal of artifacts in an older format."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from feedlab.models import control, test
from feedlab.models.candidates import candidate_request
from feedlab.models.catalog import PostCatalog
from feedlab.models.features import Block, FeatureBuilder, PostTable, Request, TextSVD
from feedlab.models.history import History
from feedlab.models.ranker import RankerConfig
from feedlab.models.registry import load_model

T = datetime(2024, 1, 10)


def builder(extra: list[Block]) -> FeatureBuilder:
    days = [T - timedelta(days=d) for d in (3, 2, 1)]
    history = History.from_arrays(days, [1, 1, 2], [10, 11, 10], ["view", "like", "like"])
    catalog = PostCatalog.from_records(
        [10, 11, 12], ["red blue sun", "blue sun sea", "sun sea red"], ["x", "y", None]
    )
    table = PostTable.build(catalog, TextSVD(2).fit(catalog.texts))
    return FeatureBuilder(history, table, extra_blocks=extra)


def test_only_the_blocks_making_asked_columns_run_and_columns_keep_the_asked_order():
    calls: list[str] = []

    def expensive(req: Request) -> dict[str, np.ndarray]:
        calls.append("expensive")
        return {"costly": np.ones(len(req.candidates), np.float32)}

    features = builder([Block(("costly",), expensive)])
    req = features.request(1, T, np.array([0, 2]))
    matrix = features.matrix(req, ["user_likes", "post_likes_all"])
    assert calls == []
    assert matrix.tolist() == [[1.0, 1.0], [1.0, 0.0]]  # user 1 liked 1; post 10 has 1 like
    assert features.matrix(req, ["costly", "user_likes"]).tolist() == [[1.0, 1.0], [1.0, 1.0]]
    assert calls == ["expensive"]
    with pytest.raises(ValueError, match="columns: no feature block makes"):
        features.check(["user_likes", "no_such_column"])


def test_candidates_come_from_each_source_in_order_once_and_never_a_liked_post():
    features = builder([])

    def source(positions: list[int]):
        return lambda req, allowed: np.array([p for p in positions if allowed[p]], np.int64)

    req = candidate_request(features, [source([2, 1]), source([0, 2])], 1, T, False)
    assert req.candidates.tolist() == [2, 0]  # post 11 (position 1) was liked by user 1
    seen_excluded = candidate_request(features, [source([2, 1, 0])], 1, T, True)
    assert seen_excluded.candidates.tolist() == [2]


def test_each_arms_config_round_trips_through_its_meta():
    for arm in (control, test):
        config = arm.config(iterations=40)
        again = RankerConfig.from_dict(json.loads(json.dumps(asdict(config))))
        assert again == config
        assert again.ranker_columns == arm.RANKER_COLUMNS


@pytest.mark.parametrize("arm", ["control", "test"])
def test_an_artifact_in_an_older_format_asks_for_a_retrain(tmp_path: Path, arm: str) -> None:
    (tmp_path / "meta.json").write_text(json.dumps({"model": arm, "format": 1}))
    with pytest.raises(ValueError) as info:
        load_model(arm, tmp_path, History())
    assert "format 1" in str(info.value)
    assert f"feedlab train {arm} --out {tmp_path}" in str(info.value)
