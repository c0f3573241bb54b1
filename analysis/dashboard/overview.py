"""What the dashboard's front page lists: every experiment the database knows (from the
configs the gateway stored and the exposures it logged), with its phases, status and traffic."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import yaml
from feedlab.storage.schema import experiment_configs, exposures
from sqlalchemy import Engine, distinct, func, select


@dataclass
class ArmTraffic:
    name: str
    weight: float | None
    users: int = 0
    exposures: int = 0


@dataclass
class Phase:
    config_version: str
    start: datetime
    end: datetime
    exposures: int
    users: int
    arms: list[ArmTraffic] = field(default_factory=list)


@dataclass
class ExperimentSummary:
    name: str
    status: str | None
    """As declared in the newest stored config that mentions the experiment."""
    traffic: float | None
    """Percent of users the newest config sends into the experiment."""
    weights: dict[str, float]
    phases: list[Phase]

    @property
    def exposures(self) -> int:
        return sum(p.exposures for p in self.phases)


def _stored_experiments(engine: Engine) -> dict[str, dict[str, dict]]:
    """version -> experiment name -> its mapping, for every stored config, oldest first (raw
    YAML, so an old config that today's schema refuses still shows)."""
    q = select(experiment_configs.c.config_version, experiment_configs.c.yaml).order_by(
        experiment_configs.c.loaded_at
    )
    out: dict[str, dict[str, dict]] = {}
    with engine.connect() as conn:
        for version, text in conn.execute(q):
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError:
                continue
            listed = data.get("experiments") if isinstance(data, dict) else None
            out[version] = {
                exp["name"]: exp
                for exp in listed or []
                if isinstance(exp, dict) and isinstance(exp.get("name"), str)
            }
    return out


def _weights(exp: dict) -> dict[str, float]:
    weights = {}
    for arm in exp.get("arms") or []:
        try:
            weights[str(arm["name"])] = float(arm["weight"])
        except (KeyError, TypeError, ValueError):
            continue
    return weights


def list_experiments(engine: Engine) -> list[ExperimentSummary]:
    """Experiments by name, each with its phases in order of first exposure."""
    e = exposures.c
    phase_q = (
        select(
            e.experiment,
            e.config_version,
            func.min(e.ts),
            func.max(e.ts),
            func.count(),
            func.count(distinct(e.user_id)),
        )
        .where(e.experiment.is_not(None))
        .group_by(e.experiment, e.config_version)
        .order_by(func.min(e.ts))
    )
    arm_q = (
        select(
            e.experiment,
            e.config_version,
            e.exp_group,
            func.count(distinct(e.user_id)),
            func.count(),
        )
        .where(e.experiment.is_not(None))
        .group_by(e.experiment, e.config_version, e.exp_group)
        .order_by(e.exp_group)
    )
    with engine.connect() as conn:
        phase_rows = conn.execute(phase_q).all()
        arm_rows = conn.execute(arm_q).all()
    stored = _stored_experiments(engine)
    declared = {name: exp for exps in stored.values() for name, exp in exps.items()}
    phases: dict[str, list[Phase]] = {}
    by_key: dict[tuple[str, str], Phase] = {}
    for name, version, start, end, n, users in phase_rows:
        phase = Phase(version, start, end, n, users)
        phases.setdefault(name, []).append(phase)
        by_key[(name, version)] = phase
    for name, version, group, users, n in arm_rows:
        weight = _weights(stored.get(version, {}).get(name, {})).get(group)
        by_key[(name, version)].arms.append(ArmTraffic(group, weight, users, n))
    out = []
    for name in sorted(set(phases) | set(declared)):
        exp = declared.get(name, {})
        traffic = exp.get("traffic")
        out.append(
            ExperimentSummary(
                name=name,
                status=exp.get("status"),
                traffic=float(traffic) if isinstance(traffic, int | float) else None,
                weights=_weights(exp),
                phases=phases.get(name, []),
            )
        )
    return out
