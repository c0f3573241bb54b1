"""Salted-hash assignment of users to experiment arms (docs/architecture.md), a pure function.

    h      = int(md5((str(user_id) + salt).encode()).hexdigest(), 16)
    bucket = h % 10000                 # the experiment takes buckets [0, traffic*100)
    slot   = (h // 10000) % 10000      # inside it, arms take consecutive slot ranges in
                                       # declared order, proportional to their weights

The arm is chosen by `slot`, not by the position of `bucket` inside [0, traffic*100): that
way raising `traffic` only adds users, and everyone already in keeps their arm (ranges scaled to
the traffic would move users between arms). `slot` and `bucket` are different digits of the
same 128-bit hash, so they are independent and uniform. Every replica (and SQL, see
`assignment_sql`) computes the same answer from the config alone.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from dataclasses import dataclass

from feedlab.experiments.config import (
    DEFAULT_GROUP,
    INTERLEAVED_GROUP,
    INTERLEAVING,
    Experiment,
    ExperimentsConfig,
)

BUCKETS = 10_000


@dataclass(frozen=True, slots=True)
class Assignment:
    """Where a user goes: experiment (None outside all), exp_group (arm or 'default'), model.
    In an interleaving experiment exp_group is 'interleaved' and `teams` holds the (arm name,
    model) of control and test, whose rankings are merged; `model` is control's."""

    experiment: str | None
    exp_group: str
    model: str
    teams: tuple[tuple[str, str], ...] = ()
    qa: bool = False
    """A QA user forced into this arm by the experiment's `qa_users` (never analysed)."""


def hash_value(user_id: int, salt: str) -> int:
    return int(hashlib.md5((str(user_id) + salt).encode()).hexdigest(), 16)


def arm_bounds(weights: list[float]) -> list[int]:
    """Upper slot bound (exclusive) of each arm: consecutive ranges proportional to weights."""
    total = float(sum(weights))
    bounds, cum = [], 0.0
    for w in weights:
        cum += w
        bounds.append(round(BUCKETS * cum / total))
    bounds[-1] = BUCKETS
    return bounds


@dataclass(frozen=True)
class _CompiledExperiment:
    name: str
    salt: str
    traffic_buckets: int
    bounds: list[int]
    arms: list[Assignment]

    def assign(self, user_id: int) -> Assignment | None:
        h = hash_value(user_id, self.salt)
        if h % BUCKETS >= self.traffic_buckets:
            return None
        return self.arms[bisect_right(self.bounds, (h // BUCKETS) % BUCKETS)]


def _compile(exp: Experiment) -> _CompiledExperiment:
    if exp.design == INTERLEAVING:
        teams = tuple((arm.name, arm.model) for arm in exp.arms)
        return _CompiledExperiment(
            name=exp.name,
            salt=exp.salt,
            traffic_buckets=round(exp.traffic * 100),
            bounds=[BUCKETS],
            arms=[Assignment(exp.name, INTERLEAVED_GROUP, exp.arms[0].model, teams)],
        )
    return _CompiledExperiment(
        name=exp.name,
        salt=exp.salt,
        traffic_buckets=round(exp.traffic * 100),
        bounds=arm_bounds([arm.weight or 0.0 for arm in exp.arms]),
        arms=[Assignment(exp.name, arm.name, arm.model) for arm in exp.arms],
    )


def forced_users(config: ExperimentsConfig) -> dict[int, Assignment]:
    """QA users of the running experiments and the arm each is forced into (the config
    lists a QA user once, so no rule overrides another)."""
    forced = {}
    for exp in (e for e in config.experiments if e.status == "running"):
        models = {arm.name: arm.model for arm in exp.arms}
        for arm, users in exp.qa_users.items():
            forced.update({u: Assignment(exp.name, arm, models[arm], qa=True) for u in users})
    return forced


class Assigner:
    """The config compiled for fast lookups: QA users' forced arms first, then running
    experiments in declared order (the first that takes the user wins), then the default
    model."""

    def __init__(self, config: ExperimentsConfig):
        self._forced = forced_users(config)
        self._experiments = [_compile(e) for e in config.experiments if e.status == "running"]
        self._default = Assignment(None, DEFAULT_GROUP, config.default_model)

    def assign(self, user_id: int) -> Assignment:
        forced = self._forced.get(user_id)
        if forced is not None:
            return forced
        for exp in self._experiments:
            hit = exp.assign(user_id)
            if hit is not None:
                return hit
        return self._default


def assign(config: ExperimentsConfig, user_id: int) -> Assignment:
    """One-off assignment; build an `Assigner` once to assign many users."""
    return Assigner(config).assign(user_id)


def _sql_text(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _hash_sql(user_id_sql: str, salt: str) -> str:
    """PostgreSQL numeric expression equal to `hash_value` (md5 read as a 128-bit integer)."""
    md5 = f"md5(CAST({user_id_sql} AS TEXT) || {_sql_text(salt)})"
    parts = []
    for i, power in enumerate((96, 64, 32, 0)):
        chunk = f"('x' || lpad(substr({md5}, {8 * i + 1}, 8), 16, '0'))::bit(64)::bigint::numeric"
        parts.append(f"{chunk} * {2**power}" if power else chunk)
    return "(" + " + ".join(parts) + ")"


def assignment_sql(config: ExperimentsConfig, user_id_sql: str = "user_id") -> str:
    """A PostgreSQL CASE expression giving the exp_group of `user_id_sql`, same as `assign`.
    Analysts use it to reproduce or audit assignment inside the database."""
    whens = [
        f"WHEN {user_id_sql} = {user} THEN {_sql_text(arm.exp_group)}"
        for user, arm in forced_users(config).items()
    ]
    for exp in (e for e in config.experiments if e.status == "running"):
        c = _compile(exp)
        h = _hash_sql(user_id_sql, exp.salt)
        inside = f"mod({h}, {BUCKETS}) < {c.traffic_buckets}"
        slot = f"mod(div({h}, {BUCKETS}), {BUCKETS})"
        for bound, arm in zip(c.bounds, c.arms, strict=True):
            whens.append(f"WHEN {inside} AND {slot} < {bound} THEN {_sql_text(arm.exp_group)}")
    if not whens:
        return f"'{DEFAULT_GROUP}'"
    return "CASE " + " ".join(whens) + f" ELSE '{DEFAULT_GROUP}' END"
