"""Team-draft interleaving (Radlinski, Kurup & Joachims 2008): merge two rankings into one list
and remember which ranking ("team") contributed each post.

Each round the team with fewer picks so far picks next (a fair coin breaks ties), taking its
highest-ranked post not already in the list. Because the coin decides who goes first in every
pair of picks, each team fills about half of every rank, so a user's likes credit the rankings
without position bias. The coin is seeded per request, so a logged request can be replayed.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Interleaved:
    """The merged list and, for each post, the index (0 or 1) of the ranking that gave it."""

    post_ids: list[int]
    teams: list[int]


def request_seed(request_id: str) -> int:
    """The coin seed of a request: the first 63 bits of its UUID (fits a signed BIGINT)."""
    return uuid.UUID(request_id).int >> 65


def team_draft(a: Sequence[int], b: Sequence[int], limit: int, seed: int) -> Interleaved:
    """Merge rankings `a` (team 0) and `b` (team 1) into at most `limit` distinct posts.

    Stops, before the coin is tossed, as soon as either team has no post left to give (the
    original algorithm's loop condition): stopping after the toss would hand the last rank to
    the team with the longer list whenever the coin chose the other, tilting the credit."""
    coin = random.Random(seed)
    ranked = (a, b)
    cursor = [0, 0]
    taken: set[int] = set()
    post_ids: list[int] = []
    teams: list[int] = []
    sizes = [0, 0]
    while len(post_ids) < limit:
        for t in (0, 1):
            while cursor[t] < len(ranked[t]) and ranked[t][cursor[t]] in taken:
                cursor[t] += 1
        if cursor[0] == len(a) or cursor[1] == len(b):
            break
        # the smaller team picks; a fair coin decides when they are level
        team = coin.getrandbits(1) if sizes[0] == sizes[1] else int(sizes[1] < sizes[0])
        post = ranked[team][cursor[team]]
        cursor[team] += 1
        taken.add(post)
        post_ids.append(post)
        teams.append(team)
        sizes[team] += 1
    return Interleaved(post_ids, teams)
