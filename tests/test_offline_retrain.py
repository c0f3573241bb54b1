"""Rolling retraining in the offline protocol: one refit per period on the events before it,
beside the model trained once, on the same pairs."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from feedlab.analysis.offline.evaluate import evaluation_pairs, window_starts
from feedlab.analysis.offline.report import ModelSpec, run
from feedlab.analysis.offline.retrain import retrain_periods, retrained
from feedlab.models.control import config, train
from feedlab.models.history import History
from feedlab.models.ranker import TrainingSet
from feedlab.models.registry import load_model

from tests.support.ranker_world import T0, world

pytestmark = pytest.mark.slow

W = timedelta(days=7)
CONFIG = config(iterations=20, step_days=2, max_cutoffs=10, text_dim=8, min_valid_groups=0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    history, catalog, profiles = world()
    out = tmp_path_factory.mktemp("control")
    train(TrainingSet(history, catalog, profiles, T0), out, CONFIG, progress=False)
    return history, catalog, profiles, out


def test_each_window_gets_a_model_refitted_at_its_start_beside_the_train_once_model(trained):
    history, catalog, profiles, out = trained
    report = run(history, [ModelSpec("control", out)], T0, W, 5, catalog, profiles, None, False, W)
    rows = {r["model"]: r for r in report["results"]}
    assert list(rows) == ["random", "popular-all", "popular", "control", "control@retrain"]
    assert rows["control@retrain"]["n"] == rows["control"]["n"] == report["protocol"]["pairs"]
    refits = rows["control@retrain"]["version"].split()
    starts = window_starts(history, T0, W)
    assert [v.rsplit("@", 1)[1] for v in refits] == [f"{t:%Y-%m-%dT%H:%M}" for t in starts]
    assert all(v.startswith(rows["control"]["version"] + "@") for v in refits)
    assert [d["a"] for d in report["versus_popular"]] == ["control", "control@retrain"]
    assert report["protocol"]["retrain_every_days"] == 7


def test_a_refit_never_sees_an_event_at_or_after_its_start(trained):
    """Likes added in the last window change no recommendation of the earlier periods."""
    history, catalog, profiles, out = trained
    last = window_starts(history, T0, W)[-1]
    ev = history.events_between(None, None)
    extra_users = np.unique(ev.user_ids)[:40]
    extra_ts = np.full(len(extra_users), np.datetime64(last + timedelta(hours=1), "us"))
    grown = History.from_arrays(
        np.concatenate([ev.ts.astype("datetime64[us]"), extra_ts]),
        np.concatenate([ev.user_ids, extra_users]),
        np.concatenate([ev.post_ids, np.full(len(extra_users), 3)]),
        ["like" if x else "view" for x in ev.is_like] + ["like"] * len(extra_users),
    )
    recs = []
    for h in (history, grown):
        pairs = [p for p in evaluation_pairs(h, T0, W) if p.at < last]
        model = load_model("control", out, h, catalog, profiles)
        assert len(retrain_periods(pairs, W)) == 2
        recs.append(retrained(model, h, pairs, W, 5, catalog, profiles).recommended)
    assert recs[0] == recs[1]
