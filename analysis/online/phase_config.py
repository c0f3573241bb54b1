"""The experiment definition a phase ran under, read back from `experiment_configs`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import yaml
from feedlab.analysis.online.results import ArmConfig
from feedlab.experiments.config import DEFAULT_DECISION_METRIC
from feedlab.storage.schema import experiment_configs
from sqlalchemy import Connection, select


@dataclass(frozen=True)
class PhaseConfig:
    config_version: str
    loaded_at: datetime | None
    experiment: str
    salt: str | None
    traffic: float | None
    arms: tuple[ArmConfig, ...]  # declared order
    status: str | None
    primary_metric: str

    @property
    def weights(self) -> dict[str, float]:
        return {a.name: a.weight for a in self.arms}

    @property
    def split_key(self) -> tuple:
        """What must be equal for two phases to be poolable: salt, traffic and the weights."""
        return (self.salt, self.traffic, tuple((a.name, a.weight) for a in self.arms))


def _experiment_dict(text: str, experiment: str, version: str) -> dict:
    """The experiment's mapping, via engineer B's validating loader when it accepts the text,
    else from the raw YAML (an old stored config must stay analysable)."""
    try:
        from feedlab.experiments.config import parse_config

        cfg = parse_config(text, source=f"experiment_configs[{version}]").config
        data = cfg.model_dump(mode="python")
    except Exception:  # invalid under today's schema: read the raw mapping
        data = yaml.safe_load(text) or {}
    for exp in data.get("experiments") or []:
        if isinstance(exp, dict) and exp.get("name") == experiment:
            return exp
    raise LookupError(f"config {version}: no experiment named {experiment!r} in its yaml")


def load_phase_config(conn: Connection, experiment: str, version: str) -> PhaseConfig:
    row = conn.execute(
        select(experiment_configs).where(experiment_configs.c.config_version == version)
    ).first()
    if row is None:
        raise LookupError(f"config_version {version!r} is not in experiment_configs")
    exp = _experiment_dict(row.yaml, experiment, version)
    arms = []
    for i, arm in enumerate(exp.get("arms") or []):
        try:
            arms.append(ArmConfig(str(arm["name"]), float(arm["weight"]), arm.get("model")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"config {version}: experiments.{experiment}.arms[{i}]: {exc}"
            ) from exc
    if not arms:
        raise ValueError(f"config {version}: experiment {experiment!r} has no arms")
    return PhaseConfig(
        version,
        row.loaded_at,
        experiment,
        exp.get("salt"),
        None if exp.get("traffic") is None else float(exp["traffic"]),
        tuple(arms),
        exp.get("status"),
        str(exp.get("primary_metric") or DEFAULT_DECISION_METRIC),
    )
