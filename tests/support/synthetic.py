"""A small synthetic experiment written through the real tables: for tests, the HTML report
demo and the screenshot script (the 10M-row benchmark generates its data in SQL instead)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import yaml
from feedlab.storage.schema import LIKE, experiment_configs, exposure_items, exposures, feed
from sqlalchemy import Connection, insert


def config_yaml(experiment: str, salt: str, weights: dict[str, float], traffic: float = 100) -> str:
    """An experiments.yaml (the shipped layout) with one running experiment."""
    arms = [{"name": a, "model": a, "weight": w} for a, w in weights.items()]
    models = {a: {"backend": "inprocess"} for a in weights}
    return yaml.safe_dump(
        {
            "default_model": next(iter(weights)),
            "experiments": [
                {
                    "name": experiment,
                    "status": "running",
                    "salt": salt,
                    "traffic": traffic,
                    "arms": arms,
                }
            ],
            "models": models,
        },
        sort_keys=False,
    )


def store_config(conn: Connection, text: str, loaded_at: datetime) -> str:
    """Insert a config as the gateway would and return its config_version."""
    from feedlab.experiments.config import parse_config

    version = parse_config(text).version
    conn.execute(
        insert(experiment_configs).values(config_version=version, loaded_at=loaded_at, yaml=text)
    )
    return version


@dataclass
class PhaseSpec:
    """One phase: arm weights, per-arm probability that an exposure gets a like, duration."""

    weights: dict[str, float]
    like_prob: dict[str, float]
    start: datetime
    days: int = 3
    users: int = 400
    first_user: int = 1
    exposures_per_user: int = 4
    salt: str = "salt-1"
    latency_ms: dict[str, float] = field(default_factory=dict)


def insert_phase(
    conn: Connection, experiment: str, spec: PhaseSpec, seed: int = 0, pre_period: bool = True
) -> str:
    """Write a phase's config, exposures, exposure items and likes; return its version.

    Arms are drawn with exact weight proportions (shuffled) so tests control the split; each
    user has a propensity shared by the pre-period, which gives CUPED something to remove."""
    rng = np.random.default_rng(seed)
    version = store_config(
        conn, config_yaml(experiment, spec.salt, spec.weights), spec.start - timedelta(minutes=1)
    )
    arms = list(spec.weights)
    total_w = sum(spec.weights.values())
    counts = [round(spec.users * spec.weights[a] / total_w) for a in arms]
    counts[-1] = spec.users - sum(counts[:-1])
    labels = np.repeat(arms, counts)
    rng.shuffle(labels)
    duration = timedelta(days=spec.days)
    exp_rows, item_rows, like_rows = [], [], []
    for k, arm in enumerate(labels):
        user = spec.first_user + k
        propensity = rng.uniform(0.5, 1.5)
        periods = [(spec.start, arm, spec.like_prob[arm])]
        if pre_period:
            periods.append((spec.start - duration, None, spec.like_prob[arms[0]]))
        for start, group, prob in periods:
            for _ in range(spec.exposures_per_user):
                ts = start + timedelta(seconds=float(rng.uniform(0, duration.total_seconds())))
                ts = ts.replace(microsecond=0)
                posts = [int(p) for p in rng.choice(5000, size=5, replace=False)]
                rid = str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | len(exp_rows)))
                exp_rows.append(
                    {
                        "request_id": rid,
                        "ts": ts,
                        "served_at": ts,
                        "user_id": user,
                        "experiment": experiment if group else None,
                        "config_version": version if group else "pre",
                        "exp_group": group or "default",
                        "model": group or "control",
                        "model_version": "v1",
                        "post_ids": posts,
                        "fallback": bool(rng.random() < 0.01),
                        "latency_ms": float(
                            rng.gamma(4, spec.latency_ms.get(group or "", 2.0) / 4)
                        ),
                    }
                )
                item_rows += [
                    {"request_id": rid, "position": i, "post_id": p, "user_id": user, "ts": ts}
                    for i, p in enumerate(posts)
                ]
                if rng.random() < min(prob * propensity, 1.0):
                    like_ts = ts + timedelta(seconds=int(rng.integers(1, 1800)))
                    like_rows.append(
                        {
                            "timestamp": like_ts,
                            "user_id": user,
                            "post_id": posts[int(rng.integers(0, 5))],
                            "action": LIKE,
                            "target": None,
                        }
                    )
    if exp_rows:
        conn.execute(insert(exposures), exp_rows)
        conn.execute(insert(exposure_items), item_rows)
    if like_rows:
        conn.execute(insert(feed), like_rows)
    return version
