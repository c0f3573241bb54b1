"""One offline evaluation run: the protocol's pairs, the baselines, the models, a table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from feedlab.analysis.offline.evaluate import (
    DEFAULT_K,
    DEFAULT_WINDOW,
    Result,
    evaluate,
    evaluation_pairs,
    median_time,
    paired_difference,
)
from feedlab.analysis.offline.retrain import retrained
from feedlab.models.catalog import PostCatalog, UserProfiles
from feedlab.models.history import History, from_us, to_us
from feedlab.models.ranker import RankedRecommender
from feedlab.models.registry import BASELINES, load_model

BASELINE_ORDER = ("random", "popular-all", "popular")


@dataclass
class ModelSpec:
    """A model to evaluate: a registry name and its artifact folder (None for baselines)."""

    name: str
    artifact: Path | None = None

    @classmethod
    def parse(cls, text: str, default_root: Path = Path("artifacts")) -> ModelSpec:
        """'control', 'control:path/to/artifact' or a baseline name."""
        name, _, path = text.partition(":")
        if name in BASELINES:
            return cls(name)
        return cls(name, Path(path) if path else default_root / name)

    @property
    def label(self) -> str:
        return self.name


def run(
    history: History,
    specs: list[ModelSpec],
    t0: datetime | None = None,
    window: timedelta = DEFAULT_WINDOW,
    k: int = DEFAULT_K,
    posts: PostCatalog | None = None,
    users: UserProfiles | None = None,
    compare: tuple[str, str] | None = None,
    progress: bool = True,
    retrain_every: timedelta | None = None,
) -> dict:
    """Evaluate the baselines and `specs` on the same pairs; a JSON-ready dict. With
    `retrain_every`, each arm is also evaluated refitted at every such step (`retrained`),
    as `NAME@retrain`, beside the model trained once."""
    t0 = median_time(history) if t0 is None else from_us(to_us(t0))
    pairs = evaluation_pairs(history, t0, window)
    if not pairs:
        raise ValueError(f"t0: no (user, window) pairs at or after {t0}")
    wanted = [ModelSpec(b) for b in BASELINE_ORDER] + [
        s for s in specs if s.name not in BASELINE_ORDER
    ]
    results: dict[str, Result] = {}
    for spec in wanted:
        model = load_model(spec.name, spec.artifact, history, posts, users)
        results[spec.label] = evaluate(model, history, pairs, k, progress=progress)
        if retrain_every is not None and isinstance(model, RankedRecommender):
            label = f"{spec.label}@retrain"
            results[label] = retrained(model, history, pairs, retrain_every, k, posts, users, label)
    out = {
        "protocol": {
            "t0": t0.isoformat(),
            "window_days": window / timedelta(days=1),
            "k": k,
            "windows": len({p.at for p in pairs}),
            "pairs": len(pairs),
            "retrain_every_days": None
            if retrain_every is None
            else retrain_every / timedelta(days=1),
        },
        "results": [r.summary() for r in results.values()],
    }
    arms = [r for name, r in results.items() if name not in BASELINE_ORDER]
    if arms:
        out["versus_popular"] = versus_popular(arms, results["popular"])
        best = max(BASELINE_ORDER, key=lambda name: results[name].hit_rate)
        out["best_baseline"] = best
        if best != "popular":
            out["versus_best_baseline"] = versus_popular(arms, results[best])
    if compare is not None:
        a, b = compare
        for name in compare:
            if name not in results:
                raise ValueError(f"compare: {name!r} was not evaluated")
        out["comparison"] = paired_difference(results[a], results[b])
        if retrain_every is not None:
            out["comparison_retrain"] = paired_difference(
                results[f"{a}@retrain"], results[f"{b}@retrain"]
            )
    return out


def versus_popular(arms: list[Result], popular: Result) -> list[dict]:
    """Each arm's paired HitRate difference to `popular` (or another baseline) on the same
    pairs, flagged `significantly_below` when the whole 95% CI is under zero: an arm that
    loses to sorting by recent likes should not go online unnoticed."""
    out = []
    for arm in arms:
        diff = paired_difference(arm, popular)
        out.append({**diff, "significantly_below": diff["ci95"][1] < 0})
    return out


def below_popular_text(report: dict) -> list[str]:
    """One line per arm against `popular` (and against the best baseline when that is
    another); a flagged arm's line starts with WARNING."""
    lines = []
    for d in [*report.get("versus_popular", []), *report.get("versus_best_baseline", [])]:
        lo, hi = d["ci95"]
        text = (
            f"{d['a']} - {d['b']}: HitRate difference {d['difference']:+.3f} "
            f"(paired, 95% CI [{lo:+.3f}, {hi:+.3f}], n={d['n']})"
        )
        if d["significantly_below"]:
            text = f"WARNING: {d['a']} is significantly below {d['b']}: {text}"
        lines.append(text)
    return lines


def table(report: dict, title: str | None = None):
    """A rich Table of a `run` report."""
    from rich.table import Table

    p = report["protocol"]
    k = p["k"]
    tab = Table(
        title=title
        or f"HitRate@{k}, T0 {p['t0']}, W {p['window_days']:g} d, "
        f"{p['windows']} windows, {p['pairs']} (user, window) pairs"
    )
    for col in ("model", "n", f"HitRate@{k}", "95% CI", f"Recall@{k}", f"NDCG@{k}", "coverage"):
        tab.add_column(col, justify="left" if col == "model" else "right")
    for r in report["results"]:
        tab.add_row(r["model"], *result_cells(r))
    return tab


def result_cells(result: dict) -> list[str]:
    """One model's row after its name: n, HitRate, 95% CI, Recall, NDCG, coverage."""
    lo, hi = result["hit_rate_ci95"]
    return [
        str(result["n"]),
        f"{result['hit_rate']:.3f}",
        f"[{lo:.3f}, {hi:.3f}]",
        f"{result['recall']:.3f}",
        f"{result['ndcg']:.3f}",
        f"{result['coverage']:.3f}",
    ]


def comparison_text(report: dict) -> str | None:
    """The compared arms' paired difference, trained once and (when evaluated) retrained."""
    found = [report[key] for key in ("comparison", "comparison_retrain") if key in report]
    if not found:
        return None
    return "\n".join(
        f"{c['a']} - {c['b']}: HitRate difference {c['difference']:+.3f} "
        f"(paired bootstrap over users, 95% CI [{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}], "
        f"n={c['n']})"
        for c in found
    )
