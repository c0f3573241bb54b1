"""Team-draft merge: the properties interleaving's credit assignment relies on."""

from __future__ import annotations

import uuid

from feedlab.gateway.interleaving import request_seed, team_draft
from hypothesis import given
from hypothesis import strategies as st

rankings = st.lists(st.integers(0, 60), max_size=40)
seeds = st.integers(0, 2**63 - 1)
limits = st.integers(1, 30)


def distinct(ranking: list[int]) -> list[int]:
    return list(dict.fromkeys(ranking))


@given(rankings, rankings, limits, seeds)
def test_team_draft_properties(a: list[int], b: list[int], limit: int, seed: int) -> None:
    merged = team_draft(a, b, limit, seed)
    assert len(merged.post_ids) == len(merged.teams) <= limit
    assert len(set(merged.post_ids)) == len(merged.post_ids), "no duplicates"
    for team, ranking in ((0, a), (1, b)):
        picked = [p for p, t in zip(merged.post_ids, merged.teams, strict=True) if t == team]
        assert set(picked) <= set(ranking)
        order = {p: i for i, p in reversed(list(enumerate(ranking)))}
        assert [order[p] for p in picked] == sorted(order[p] for p in picked), "arm's order"
    assert abs(merged.teams.count(0) - merged.teams.count(1)) <= 1, "balanced teams"
    if len(distinct(a)) >= limit and len(distinct(b)) >= limit:
        assert len(merged.post_ids) == limit
    assert team_draft(a, b, limit, seed) == merged, "same seed, same list"


@given(st.permutations(list(range(10))), seeds)
def test_each_team_gives_its_best_remaining_post(ranking: list[int], seed: int) -> None:
    """Two copies of one ranking interleave back into that ranking (only the teams vary)."""
    merged = team_draft(ranking, list(ranking), 10, seed)
    assert merged.post_ids == ranking
    assert all(sorted(merged.teams[i : i + 2]) == [0, 1] for i in range(0, 10, 2))


def test_the_coin_varies_with_the_seed_and_is_fair() -> None:
    ranking = list(range(6))
    firsts = [team_draft(ranking, ranking, 6, s).teams[0] for s in range(2000)]
    assert 900 < sum(firsts) < 1100


def test_request_seed_is_a_stable_non_negative_bigint() -> None:
    rid = str(uuid.UUID(int=2**128 - 1))
    assert request_seed(rid) == 2**63 - 1
    rid = str(uuid.uuid4())
    assert request_seed(rid) == request_seed(rid) >= 0
