"""Training pieces of the ranker: point-in-time cutoffs, labelled rows, the HitRate@k used to
pick the prior and the tree count, and the artifact's meta.json."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from feedlab.models.history import History


class CutoffConfig(Protocol):
    window_days: float
    step_days: float
    max_cutoffs: int
    min_history_days: float


@dataclass
class TrainingRows:
    """Labelled candidate rows: `matrix` (columns named by `columns`), `labels`, and `groups`
    (one id per user and cutoff, rows of a group contiguous); `users` (each row's user, for
    confidence intervals that resample users) and `cutoff` (rows of a single cutoff) when
    known."""

    matrix: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    columns: list[str]
    users: np.ndarray | None = None
    cutoff: datetime | None = None

    @classmethod
    def concat(cls, parts: list[TrainingRows]) -> TrainingRows:
        """The rows of `parts` in order: a view when they are consecutive row ranges of one
        buffer (as `RowBuffer` makes them, so holding out cutoffs copies nothing), else a copy."""
        users = [r.users for r in parts if r.users is not None]
        return cls(
            _joined([r.matrix for r in parts]),
            _joined([r.labels for r in parts]),
            _joined([r.groups for r in parts]),
            parts[0].columns,
            _joined(users) if len(users) == len(parts) else None,
        )

    def group_users(self) -> np.ndarray:
        """The user of each group, in group-id order (as `group_hits` returns groups)."""
        if self.users is None:
            raise ValueError("rows: no user ids")
        _, first = np.unique(self.groups, return_index=True)
        return self.users[first]

    def take(self, columns: list[str]) -> np.ndarray:
        """The matrix of `columns`, in that order."""
        return self.matrix[:, [self.columns.index(c) for c in columns]]

    def subset(self, mask: np.ndarray) -> TrainingRows:
        users = None if self.users is None else self.users[mask]
        return TrainingRows(
            self.matrix[mask], self.labels[mask], self.groups[mask], self.columns, users
        )


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    """`parts` stacked along rows: a view of their base array when they are consecutive row
    slices of it, else a new array."""
    base = parts[0].base
    if isinstance(base, np.ndarray) and base.flags.c_contiguous:
        address, row = base.__array_interface__["data"][0], base.strides[0]
        starts = [(p.__array_interface__["data"][0] - address) // row for p in parts]
        same = all(p.base is base and p.strides == base.strides for p in parts)
        ends = [s + len(p) for s, p in zip(starts, parts, strict=True)]
        if same and starts[1:] == ends[:-1]:
            return base[starts[0] : ends[-1]]
    return np.concatenate(parts)


class RowBuffer:
    """Room for at most `capacity` labelled rows, allocated once and filled cutoff by cutoff:
    training memory is set by the row budget, whatever the number of events, and each
    cutoff's `TrainingRows` is a view into it. Pages are touched only as rows are written."""

    def __init__(self, capacity: int, columns: list[str]) -> None:
        self.columns = columns
        self.matrix = np.empty((capacity, len(columns)), np.float32)
        self.labels = np.empty(capacity, bool)
        self.users = np.empty(capacity, np.int64)
        self.groups = np.empty(capacity, np.int64)
        self.filled = 0
        self._next_group = 0

    def __len__(self) -> int:
        return len(self.labels)

    def append(self, matrix: np.ndarray, labels: np.ndarray, user: int) -> None:
        """One group's rows (a user's candidates at a cutoff)."""
        lo, hi = self.filled, self.filled + len(labels)
        if hi > len(self):
            raise ValueError(f"rows: {hi} exceed the buffer of {len(self)}")
        self.matrix[lo:hi], self.labels[lo:hi], self.users[lo:hi] = matrix, labels, user
        self.filled = hi

    def close_cutoff(self, start: int, cutoff: datetime) -> TrainingRows:
        """The rows appended since `start` as one cutoff's rows: groups ordered by user id
        (the order does not depend on how users were sampled) and numbered after the previous
        cutoff's."""
        part = slice(start, self.filled)
        order = np.argsort(self.users[part], kind="stable")
        for array in (self.matrix, self.labels, self.users):
            array[part] = array[part][order]
        _, group = np.unique(self.users[part], return_inverse=True)
        self.groups[part] = self._next_group + group
        self._next_group += int(group.max()) + 1
        return TrainingRows(
            self.matrix[part],
            self.labels[part],
            self.groups[part],
            self.columns,
            self.users[part],
            cutoff,
        )


def cutoffs(history: History, t0: datetime, config: CutoffConfig) -> list[datetime]:
    """Training cutoffs, oldest first; each label window [c, c+W) ends by T0."""
    span = history.time_range()
    if span is None:
        raise ValueError("t0: no events before T0 to train on")
    window, step = timedelta(days=config.window_days), timedelta(days=config.step_days)
    # warm-up: `min_history_days`, but never more than a third of the pre-T0 span
    warmup = min(timedelta(days=config.min_history_days), (t0 - window - span[0]) / 3)
    first_allowed = span[0] + warmup
    found: list[datetime] = []
    c = t0 - window
    while c >= first_allowed and len(found) < config.max_cutoffs:
        found.append(c)
        c -= step
    if len(found) < 2:
        raise ValueError(
            f"t0: need at least two training cutoffs between {first_allowed} and {t0 - window}"
        )
    return found[::-1]


def group_hits(scores: np.ndarray, rows: TrainingRows, k: int = 5) -> np.ndarray:
    """Whether each group's top-k by `scores` holds a positive, in group-id order; ties keep
    row order. One sort over all rows: training calls this once per tree count."""
    order = np.lexsort((-np.asarray(scores, dtype=np.float64), rows.groups))
    groups = rows.groups[order]
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    top_hits = np.asarray(rows.labels[order], dtype=bool) & (rank < k)
    return np.logical_or.reduceat(top_hits, starts)


def group_hit_rate(scores: np.ndarray, rows: TrainingRows, k: int = 5) -> float:
    """Share of groups whose top-k by `scores` holds a positive (HitRate@k among candidates)."""
    return float(group_hits(scores, rows, k).mean())


def hits_by_trees(
    ranker: Any, prior: np.ndarray, matrix: np.ndarray, rows: TrainingRows, step: int
) -> dict[int, np.ndarray]:
    """`group_hits` of `prior` plus the raw scores of the ranker's first n trees on `rows`
    (`matrix`: its ranker columns), for n = 0 (the prior alone), step, 2 step, ... and the full
    count. One staged pass: each step adds only its own trees."""
    hits = {0: group_hits(prior, rows)}
    staged = ranker.staged_predict(matrix, prediction_type="RawFormulaVal", eval_period=step)
    for i, raw in enumerate(staged):
        hits[min((i + 1) * step, ranker.tree_count_)] = group_hits(prior + raw, rows)
    return hits


def hit_rate_by_trees(
    ranker: Any, prior: np.ndarray, matrix: np.ndarray, rows: TrainingRows, step: int
) -> dict[int, float]:
    """The HitRate@5 of each tree count of `hits_by_trees`."""
    return {n: float(h.mean()) for n, h in hits_by_trees(ranker, prior, matrix, rows, step).items()}


class TreeProgress:
    """CatBoost callback that moves a progress bar one tree at a time: a fit over a million
    rows takes minutes, and a bar that only moves when the fit ends looks hung."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def after_iteration(self, info: object) -> bool:
        self.bar.update()
        return True  # keep training


def tree_bar(desc: str, trees: int, progress: bool) -> Any:
    """The bar a training's CatBoost fits advance (`trees`: the first fit's; the final refit
    adds its own with `bar.total += n`)."""
    from tqdm import tqdm

    return tqdm(total=trees, desc=desc, unit=" trees", disable=not progress)


def fewest_best_trees(rates: dict[int, float]) -> int:
    """The tree count with the best hit rate (0: the prior alone); ties go to fewer trees."""
    return max(rates, key=lambda n: (rates[n], -n))


def training_data(
    past: History,
    span: tuple[datetime, datetime],
    points: list[datetime],
    window_days: float,
    rows: TrainingRows,
) -> dict:
    """The meta.json `training_data` block: what the model saw, for audits of T0."""
    return {
        "first_event": span[0].isoformat(),
        "last_event": span[1].isoformat(),
        "events": len(past),
        "cutoffs": [c.isoformat() for c in points],
        "label_windows_end": (points[-1] + timedelta(days=window_days)).isoformat(),
        "rows": len(rows.labels),
        "positives": int(rows.labels.sum()),
        "groups": len(np.unique(rows.groups)),
    }


def write_meta(out: Path, arm: str, t0: datetime, meta: dict) -> dict:
    """Version the meta by a digest of its content (so identical training gives one name) and
    write it as `out/meta.json`."""
    digest = hashlib.sha1(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:8]
    meta["version"] = f"{arm}-{t0:%Y%m%d}-{digest}"
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta
