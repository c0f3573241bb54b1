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
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from feedlab.analysis.offline.evaluate import median_time, window_starts  # noqa: E402
from feedlab.models import control, test  # noqa: E402
from feedlab.models.ranker import (  # noqa: E402
    Ranker,
    RankerConfig,
    fit_correction,
    fit_prior,
    rows_per_cutoff,
)
from feedlab.models.scoring import Prior, Scorer, share_columns  # noqa: E402
from feedlab.models.training import TrainingRows, group_hit_rate  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.quality import MOVIELENS, load_db, movielens_db  # noqa: E402


@dataclass
class Fold:
    """One side of the cross-fitting: the rows fitted on, the rows scored, and the prior
    fitted on the former."""

    fit: TrainingRows
    scored: TrainingRows
    prior: Prior


def folds(rows: TrainingRows, shares: list[str]) -> list[Fold]:
    """Two folds by (user, window) group parity, each with its prior fitted once."""
    out = []
    for parity in (0, 1):
        held_out = rows.groups % 2 == parity
        fit = rows.subset(~held_out)
        out.append(Fold(fit, rows.subset(held_out), fit_prior(fit, shares)))
    return out


def cross_fitted_hit_rate(
    parts: list[Fold], columns: list[str], trees: int, config: RankerConfig
) -> float:
    """HitRate@5 among candidates over all groups, each fold scored by the prior plus a
    correction from `columns` fitted on the other fold (`trees` 0: the prior alone)."""
    hits = groups = 0.0
    for fold in parts:
        booster = fit_correction(fold.fit, fold.prior, columns, trees, config) if trees else None
        scorer = Scorer(fold.prior, tuple(columns), booster)
        n = len(np.unique(fold.scored.groups))
        hits += group_hit_rate(scorer.score(fold.scored.take(scorer.columns)), fold.scored) * n
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
    config = test.config()
    test_columns = list(test.RANKER_COLUMNS)
    control_columns = list(control.RANKER_COLUMNS)
    embedding = [c for c in test_columns if c.startswith("emb_")]
    column_sets = {
        "control's columns": control_columns,
        "test's columns": test_columns,
        "control's + embedding columns": control_columns + embedding,
        "embedding columns only": embedding,
    }
    with tempfile.TemporaryDirectory() as tmp:
        history, posts, users = load_db(movielens_db(Path(tmp)))
    settings = test.EmbeddingConfig()
    _, _, embedder, cache, _ = test.post_embeddings(posts, settings.model)
    ranker = Ranker(config, test.EmbeddingExtension(settings, embedder, cache))
    pipeline = ranker.fit_tables(posts, users).pipeline(history, posts, ranker.users_)
    shares = share_columns(config.prior_windows)
    wanted = list(dict.fromkeys([*shares, *control_columns, *test_columns]))
    starts = window_starts(history, median_time(history), timedelta(days=config.window_days))
    rows = TrainingRows.concat(rows_per_cutoff(pipeline, starts, wanted, config.window_days))
    table = Table(
        title=f"MovieLens 100K after T0: correction cross-fitted on the evaluation windows "
        f"({len(np.unique(rows.groups))} groups with a liked candidate, HitRate@5 among "
        "candidates)"
    )
    for col in ("columns", "trees", "prior alone", "prior + correction", "difference"):
        table.add_column(col, justify="left" if col == "columns" else "right")
    parts = folds(rows, shares)
    prior = cross_fitted_hit_rate(parts, [], 0, config)
    for name, columns in column_sets.items():
        for trees in args.trees:
            corrected = cross_fitted_hit_rate(parts, columns, trees, config)
            table.add_row(
                name, str(trees), f"{prior:.3f}", f"{corrected:.3f}", f"{corrected - prior:+.3f}"
            )
    console.print(table)


if __name__ == "__main__":
    main()
