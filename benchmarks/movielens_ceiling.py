"""MovieLens ceiling: could any correction of the popularity prior gain after T0, given the
columns each arm has?

The arms learn their correction before T0 and are judged after it. This script asks a
deliberately unfair question instead: fit the correction on the evaluation windows
themselves (2-fold cross-fitting over (user, window) groups; a user's other windows may sit in
the other fold, which only flatters the result) and score the held-out fold. If a column set
cannot beat the prior even so, no honest model trained before T0 will beat it with them.

Rows are the test arm's candidates at each evaluation window start (shared sources plus the
posts nearest to the user's taste), features from history before it, label = liked in the
window. HitRate@5 here is among groups with a liked candidate, so it runs higher than the
protocol's figure, which also counts users whose likes no candidate source found.

    .venv/bin/python benchmarks/movielens_ceiling.py [--trees 50 150]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from feedlab.analysis.offline.evaluate import median_time, window_starts  # noqa: E402
from feedlab.models.control.train import TrainConfig as ControlConfig  # noqa: E402
from feedlab.models.test.scoring import PriorScorer, fit_prior  # noqa: E402
from feedlab.models.test.train import (  # noqa: E402
    TrainConfig,
    fit_correction,
    labelled_candidates,
    post_embeddings,
)
from feedlab.models.training import Rows, group_hit_rate  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.quality import MOVIELENS, load_db, movielens_db  # noqa: E402


@dataclass
class Fold:
    """One side of the cross-fitting: the rows fitted on, the rows scored, and the prior
    (column, coef, intercept) fitted on the former."""

    fit: Rows
    scored: Rows
    prior: tuple[str, float, float]


def subset(rows: Rows, mask: np.ndarray) -> Rows:
    return Rows(rows.matrix[mask], rows.labels[mask], rows.groups[mask], rows.columns)


def folds(rows: Rows) -> list[Fold]:
    """Two folds by (user, window) group parity, each with its prior fitted once."""
    out = []
    for parity in (0, 1):
        held_out = rows.groups % 2 == parity
        fit = subset(rows, ~held_out)
        prior = fit_prior(
            fit.matrix, fit.labels, fit.groups, fit.columns, partial(group_hit_rate, rows=fit)
        )
        out.append(Fold(fit, subset(rows, held_out), prior))
    return out


def cross_fitted_hit_rate(
    parts: list[Fold], columns: list[str], trees: int, config: TrainConfig | None
) -> float:
    """HitRate@5 among candidates over all groups, each fold scored by the prior plus a
    correction from `columns` fitted on the other fold (`config` None: the prior alone)."""
    hits = groups = 0.0
    for fold in parts:
        scorer = PriorScorer(fold.fit.columns, columns, *fold.prior, trees)
        if config is not None:
            scorer.ranker = fit_correction(fold.fit, scorer, config, trees)
        n = len(np.unique(fold.scored.groups))
        hits += group_hit_rate(scorer.score(fold.scored.matrix), fold.scored) * n
        groups += n
    return hits / groups


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trees", type=int, nargs="+", default=[50, 150])
    args = parser.parse_args()
    console = Console(width=150)
    if not MOVIELENS.is_dir():
        console.print(f"skipping: MovieLens 100K is not in {MOVIELENS}")
        return
    config = TrainConfig()
    test_columns = list(config.ranker_columns)
    control_columns = list(ControlConfig().ranker_columns)
    embedding = [c for c in test_columns if c.startswith("emb_")]
    column_sets = {
        "control's columns": control_columns,
        "test's columns": test_columns,
        "control's + embedding columns": control_columns + embedding,
        "embedding columns only": embedding,
    }
    with tempfile.TemporaryDirectory() as tmp:
        history, posts, users = load_db(movielens_db(Path(tmp)))
    vectors = post_embeddings(posts, config.embedding_model)[0]
    starts = window_starts(history, median_time(history), timedelta(days=config.window_days))
    per_window = labelled_candidates(history, posts, users, vectors, starts, config).per_cutoff
    rows = Rows.concat(per_window)
    table = Table(
        title=f"MovieLens 100K after T0: correction cross-fitted on the evaluation windows "
        f"({len(np.unique(rows.groups))} groups with a liked candidate, HitRate@5 among "
        "candidates)"
    )
    for col in ("columns", "trees", "prior alone", "prior + correction", "difference"):
        table.add_column(col, justify="left" if col == "columns" else "right")
    parts = folds(rows)
    prior = cross_fitted_hit_rate(parts, [], 0, None)
    for name, columns in column_sets.items():
        for trees in args.trees:
            corrected = cross_fitted_hit_rate(parts, columns, trees, config)
            table.add_row(
                name, str(trees), f"{prior:.3f}", f"{corrected:.3f}", f"{corrected - prior:+.3f}"
            )
    console.print(table)


if __name__ == "__main__":
    main()
