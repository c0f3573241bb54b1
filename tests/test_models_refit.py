"""Per-day fits off the request path: a request on a new day never waits for its fit."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import numpy as np
from feedlab.models.candidates import CoVisitation, DailyCoVisitation
from feedlab.models.history import History
from feedlab.models.refit import DailyRefit

DAY1 = datetime(2024, 3, 1)
DAY2 = DAY1 + timedelta(days=1)


def test_blocking_mode_fits_each_day_on_the_spot():
    made: list[datetime] = []
    refit = DailyRefit(lambda day: made.append(day) or day)
    assert refit.at(DAY2 + timedelta(hours=5)) == DAY2
    assert refit.at(DAY1 + timedelta(hours=1)) == DAY1
    assert made == [DAY2, DAY1]


def test_a_request_on_a_new_day_returns_yesterdays_fit_while_todays_runs_in_background():
    release = threading.Event()
    started: list[datetime] = []

    def fit(day: datetime) -> datetime:
        started.append(day)
        if day == DAY2:
            assert release.wait(30)
        return day

    refit = DailyRefit(fit)
    refit.background = True
    assert refit.at(DAY1 + timedelta(hours=3)) == DAY1  # nothing earlier: made in place
    # the new day's fit is blocked, and the request still returns, with yesterday's fit
    assert refit.at(DAY2 + timedelta(seconds=1)) == DAY1
    assert refit.at(DAY2 + timedelta(hours=2)) == DAY1
    pending = refit.pending(DAY2)
    assert pending is not None and not pending.done()
    assert refit.days() == [DAY1]
    release.set()
    pending.result(timeout=30)
    assert refit.at(DAY2 + timedelta(hours=3)) == DAY2
    assert started.count(DAY2) == 1  # queued once for all the requests that asked


def test_background_mode_never_serves_a_fit_of_a_later_midnight():
    """A request before every fit's midnight has no point-in-time fit: it is made for it."""
    refit = DailyRefit(lambda day: day)
    refit.background = True
    assert refit.at(DAY2 + timedelta(hours=1)) == DAY2
    assert refit.at(DAY1 + timedelta(hours=23)) == DAY1
    assert refit.pending(DAY1) is None


def test_a_failed_background_fit_keeps_the_stale_one_serving():
    def fit(day: datetime) -> datetime:
        if day == DAY2:
            raise RuntimeError("boom")
        return day

    refit = DailyRefit(fit)
    refit.background = True
    refit.at(DAY1)
    assert refit.at(DAY2 + timedelta(hours=1)) == DAY1
    pending = refit.pending(DAY2)
    if pending is not None:
        pending.exception(timeout=30)
    assert refit.at(DAY2 + timedelta(hours=2)) == DAY1


def test_co_visitation_of_a_new_day_is_yesterdays_until_the_refit_lands():
    """Likes on day 1 change the co-visitation of day 2; a day-2 request before the refit
    gets the day-1 fit (it holds no like at or after its own time), after it the day-2 one."""
    ts = [DAY1 - timedelta(hours=5)] * 2 + [DAY1 + timedelta(hours=h) for h in (1, 2, 3, 4)]
    users = [1, 1, 2, 2, 3, 3]
    posts = [10, 11, 10, 12, 11, 12]
    history = History.from_arrays(ts, users, posts, ["like"] * 6)
    catalog = np.array([10, 11, 12])
    daily = DailyCoVisitation(history, catalog, neighbours=5)
    daily.background = True
    day1 = daily.at(DAY1 + timedelta(hours=6))
    assert day1.similarity[1, 2] == 0  # 11 and 12 are co-liked only on day 1
    served = daily.at(DAY2 + timedelta(minutes=1))
    assert served is day1
    pending = daily.pending(DAY2)
    if pending is not None:
        pending.result(timeout=30)
    fresh = daily.at(DAY2 + timedelta(minutes=2))
    expected = CoVisitation.fit(history, DAY2, catalog, 5).similarity.toarray()
    assert fresh is not day1 and np.allclose(fresh.similarity.toarray(), expected)
    assert fresh.similarity[1, 2] > 0


def test_serving_switches_a_ranked_models_daily_fits_to_background():
    """What `load_warm` does to a loaded arm: its co-visitation (and any source or block
    holding a DailyRefit) refits off the request path; training's pipeline stays blocking."""
    from feedlab.models.catalog import PostCatalog, UserProfiles
    from feedlab.models.ranker import RankedRecommender, Ranker, RankerConfig
    from feedlab.models.refit import serve_in_background

    history = History.from_arrays([DAY1], [1], [10], ["like"])
    texts = ["red sun sea", "blue sun sea", "sun sea red"]
    catalog = PostCatalog.from_records([10, 11, 13], texts, ["x", "y", None])
    ranker = Ranker(RankerConfig(text_dim=2)).fit_tables(catalog, UserProfiles.empty())
    pipeline = ranker.pipeline(history, catalog, UserProfiles.empty())
    refits = pipeline.refits()
    assert [r.name for r in refits] == ["co-visitation", "EASE"]  # the shared one once
    assert isinstance(refits[0], DailyCoVisitation)
    assert not any(r.background for r in refits)
    model = RankedRecommender("control", "v", ranker, pipeline)
    switched = serve_in_background(model)
    assert switched == refits and all(r.background for r in switched)
    model.add_posts([12], ["green sun sea"])
    assert model.pipeline is not pipeline and all(r.background for r in model.refits())
