"""`analyze(engine, experiment)`: per-phase online analysis as a JSON-ready dict.

Phases (config versions) are analysed separately: a split change between phases makes a
pooled comparison biased (Simpson's paradox), so pooling is refused unless every phase has the
same salt, traffic and weights and the caller asks for it."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
from feedlab.analysis.online import queries
from feedlab.analysis.online.metrics import METRICS, PRIMARY, mean_stats, ratio_stats
from feedlab.analysis.online.phase_config import PhaseConfig, load_phase_config
from feedlab.analysis.stats.bootstrap import poisson_bootstrap
from feedlab.analysis.stats.frequentist import (
    cuped_welch,
    mann_whitney,
    ratio_ztest,
    two_proportion_ztest,
    welch_ttest,
)
from feedlab.analysis.stats.moments import JointStats, MeanStats
from feedlab.analysis.stats.multiple import holm
from feedlab.analysis.stats.power import minimum_detectable_effect
from feedlab.analysis.stats.sequential import sequential_test
from feedlab.analysis.stats.srm import srm_test
from feedlab.storage.clock import utcnow
from sqlalchemy import Engine

EPOCH = date(1970, 1, 1)


class PoolingRefused(ValueError):
    """The requested phases have different splits; pooling them would be Simpson's paradox."""


@dataclass(frozen=True)
class Options:
    window_s: float = 3600.0
    alpha: float = 0.05
    n_boot: int = 1000
    boot_buckets: int = 2_000
    seed: int = 0
    cuped: bool = True
    planned_users: int | None = None
    since: datetime | None = None
    until: datetime | None = None


def analyze(
    engine: Engine,
    experiment: str,
    phase: str | None = None,
    options: Options | None = None,
    pool: bool = False,
) -> dict:
    """Analyse every phase of `experiment` (or only `phase`); see module doc for pooling."""
    opt = options or Options()
    with engine.connect() as conn:
        queries.tune_session(conn)
        queries.refresh_planner_stats(conn)
        phases = queries.list_phases(conn, experiment, opt.since, opt.until)
        if phase is not None:
            phases = [p for p in phases if p["config_version"] == phase]
            if not phases:
                raise LookupError(f"--phase: no exposures of {experiment!r} under {phase!r}")
        if not phases:
            raise LookupError(f"experiment: no exposures logged for {experiment!r}")
        configs = [load_phase_config(conn, experiment, p["config_version"]) for p in phases]
        notes: list[str] = []
        if pool and len(phases) > 1:
            keys = {c.split_key for c in configs}
            if len(keys) > 1:
                raise PoolingRefused(
                    "--pool: phases "
                    + ", ".join(c.config_version for c in configs)
                    + " differ in salt, traffic or weights; pooling them is Simpson's paradox."
                    " Analyse them per phase (the default)."
                )
            groups = [(phases, configs[-1])]
            notes.append(f"pooled {len(phases)} phases with identical split")
        else:
            groups = [([p], c) for p, c in zip(phases, configs, strict=True)]
            if len(phases) > 1:
                splits = {c.split_key for c in configs}
                notes.append(
                    f"{len(phases)} phases reported separately"
                    + (" (their splits differ; never pool them)" if len(splits) > 1 else "")
                )
        results = [_analyze_phase(conn, experiment, ph, cfg, opt) for ph, cfg in groups]
    return {
        "experiment": experiment,
        "generated_at": utcnow().replace(microsecond=0).isoformat(),
        "window_s": opt.window_s,
        "alpha": opt.alpha,
        "notes": notes,
        "phases": results,
    }


def analyze_versions(
    engine: Engine, experiment: str, versions: list[str], options: Options | None = None
) -> dict:
    """One analysis over the given versions taken as a single sample, with no split check:
    the building block of `analyze`, exposed so tests can show what naive pooling does."""
    opt = options or Options()
    with engine.connect() as conn:
        queries.tune_session(conn)
        queries.refresh_planner_stats(conn)
        phases = [
            p
            for p in queries.list_phases(conn, experiment, opt.since, opt.until)
            if p["config_version"] in versions
        ]
        cfg = load_phase_config(conn, experiment, phases[-1]["config_version"])
        return _analyze_phase(conn, experiment, phases, cfg, opt)


def _analyze_phase(conn, experiment: str, phases: list[dict], cfg: PhaseConfig, opt: Options):
    versions = tuple(p["config_version"] for p in phases)
    sel = queries.Selection(experiment, versions, opt.since, opt.until)
    lo = min(p["start"] for p in phases)
    hi = max(p["end"] for p in phases)
    length = hi - lo
    pre = (lo - length, lo) if opt.cuped and length > timedelta(0) else None
    ws = queries.Workspace(conn)
    timer = _Timer()
    try:
        with timer("per-user aggregation (SQL)"):
            ws.build(sel, lo, hi, opt.window_s, pre)
        with timer("per-arm sufficient statistics (SQL)"):
            sums = ws.arm_sums()
            overlap = ws.users_in_several_arms()
        arms = [name for name, _, _ in cfg.arms]
        control = "control" if "control" in arms else arms[0]
        srm = srm_test({a: int(s["n"]) for a, s in sums.items() if a in arms}, cfg.weights)
        comparisons = [
            _compare(ws, sums, control, arm, opt, timer)
            for arm in arms
            if arm != control and arm in sums and control in sums
        ]
        with timer("daily cumulative + sequential (SQL windows)"):
            daily = _daily(ws, control, [c["arm"] for c in comparisons], opt)
        with timer("guardrails (SQL percentiles)"):
            guard = queries.guardrails(conn, sel, sorted(sums))
    finally:
        ws.close()
    for comp in comparisons:
        comp["sequential"] = daily["sequential"].get(comp["arm"])
        comp["verdict"] = _verdict(comp, srm.flagged, opt)
    warnings = []
    if srm.flagged:
        warnings.append(
            f"SRM: users per arm {srm.observed} do not match weights {cfg.weights} "
            f"(chi-square p = {srm.p_value:.2e} < 0.001); metrics of this phase are not trustworthy"
        )
    if overlap:
        warnings.append(f"{overlap} users were exposed in more than one arm of this phase")
    unknown = sorted(set(sums) - set(arms))
    if unknown:
        warnings.append(f"exposures with exp_group not in the config: {unknown}")
    return {
        "config": cfg.as_dict(),
        "config_versions": list(versions),
        "start": lo.isoformat(),
        "end": hi.isoformat(),
        "pre_period": [pre[0].isoformat(), pre[1].isoformat()] if pre else None,
        "exposures": int(sum(p["exposures"] for p in phases)),
        "users": {a: int(s["n"]) for a, s in sums.items()},
        "control": control,
        "srm": srm.as_dict(),
        "warnings": warnings,
        "comparisons": comparisons,
        "guardrails": guard,
        "daily": daily["series"],
        "timings_s": timer.spent,
    }


class _Timer:
    """Wall time per analysis step, reported beside the results (the benchmark prints it)."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, step: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.spent[step] = self.spent.get(step, 0.0) + time.perf_counter() - start


def _compare(
    ws: queries.Workspace, sums: dict, control: str, arm: str, opt: Options, timer: _Timer
) -> dict:
    a, b = sums[control], sums[arm]
    with timer("user-bucket sums for the bootstrap (SQL)"):
        values = {
            g: np.array(ws.bucket_sums(g, opt.boot_buckets), dtype=float).reshape(-1, 5)
            for g in (control, arm)
        }
    va, vb = values[control], values[arm]  # columns: users, hr, lr, liked, n_items
    out = []
    for i, m in enumerate(METRICS):
        row: dict = {"metric": m.key, "label": m.label, "kind": m.kind}
        if m.kind == "mean":
            ja, jb = mean_stats(a, m.column), mean_stats(b, m.column)
            main = welch_ttest(ja.a, jb.a, opt.alpha)
            col = {"hr": 1, "lr": 2, "liked": 3}[m.column]
            with timer("Poisson bootstrap (numpy)"):
                boot = poisson_bootstrap(
                    va[:, col],
                    vb[:, col],
                    va[:, 0],
                    vb[:, 0],
                    n_boot=opt.n_boot,
                    alpha=opt.alpha,
                    seed=opt.seed + i,
                )
            with timer("Mann-Whitney ranks (SQL windows)"):
                rank_sum, ties = ws.rank_sums(m.column, control, arm)
            row["mann_whitney"] = mann_whitney(
                a["n"], b["n"], rank_sum, ties, ja.a.mean, jb.a.mean
            ).as_dict()
            if opt.cuped:
                cup, theta = cuped_welch(ja, jb, opt.alpha)
                row["cuped"] = cup.as_dict() | {"theta": theta}
            row["sd_control"] = math.sqrt(ja.a.var) if a["n"] > 1 else None
        elif m.kind == "ratio":
            main = ratio_ztest(ratio_stats(a), ratio_stats(b), opt.alpha)
            with timer("Poisson bootstrap (numpy)"):
                boot = poisson_bootstrap(
                    va[:, 3],
                    vb[:, 3],
                    va[:, 4],
                    vb[:, 4],
                    n_boot=opt.n_boot,
                    alpha=opt.alpha,
                    seed=opt.seed + i,
                )
        else:
            main = two_proportion_ztest(a["conv"], a["n"], b["conv"], b["n"], opt.alpha)
            boot = None
        row["test"] = main.as_dict()
        row["bootstrap"] = boot.as_dict() if boot else None
        out.append(row)
    adjusted = holm([r["test"]["p_value"] for r in out])
    for r, p in zip(out, adjusted, strict=True):
        r["p_holm"] = p
        r["significant"] = p < opt.alpha
    primary = next(r for r in out if r["metric"] == PRIMARY)
    sd = primary.get("sd_control")
    mean = primary["test"]["mean_control"]
    mde = None
    if sd and mean:
        mde = minimum_detectable_effect(mean, a["n"], b["n"], opt.alpha, 0.8, sd=sd)
    return {"arm": arm, "control": control, "metrics": out, "mde_primary": mde}


def _hr(c: dict):
    return queries._f(c["hits"]) / c["n_exp"]


DAILY_MOMENTS = {
    "hr": _hr,
    "hr_sq": lambda c: _hr(c) * _hr(c),
    "liked": lambda c: queries._f(c["liked"]),
    "items": lambda c: queries._f(c["n_items"]),
    "liked_sq": lambda c: queries._f(c["liked"]) * c["liked"],
    "items_sq": lambda c: queries._f(c["n_items"]) * c["n_items"],
    "liked_items": lambda c: queries._f(c["liked"]) * c["n_items"],
}


def _daily(ws: queries.Workspace, control: str, arms: list[str], opt: Options) -> dict:
    """Cumulative effect at the end of each day, and the group-sequential test over those
    daily looks (information fraction = users so far / planned users, or / final users)."""
    rows = ws.daily_increments(DAILY_MOMENTS)
    for r in rows:
        r["day"] = (EPOCH + timedelta(days=int(r["day"]))).isoformat()
    days = sorted({r["day"] for r in rows})
    running: dict[str, dict[str, float]] = {}
    cum: dict[str, list[dict]] = {}
    for day in days:
        for r in rows:
            if r["day"] != day:
                continue
            acc = running.setdefault(r["exp_group"], dict.fromkeys(["n", *DAILY_MOMENTS], 0.0))
            for k in acc:
                acc[k] += float(r[k] or 0)
        for g, acc in running.items():
            cum.setdefault(g, []).append({"day": day, **acc})
    series, seq = [], {}
    for arm in arms:
        looks = []
        for ca, cb in zip(cum.get(control, []), cum.get(arm, []), strict=False):
            if ca["day"] != cb["day"] or ca["n"] < 2 or cb["n"] < 2:
                continue
            hr = welch_ttest(
                MeanStats(ca["n"], ca["hr"], ca["hr_sq"]),
                MeanStats(cb["n"], cb["hr"], cb["hr_sq"]),
                opt.alpha,
            )
            lr = ratio_ztest(_ratio(ca), _ratio(cb), opt.alpha)
            point = {
                "arm": arm,
                "day": ca["day"],
                "users": int(ca["n"] + cb["n"]),
                "hitrate": {k: hr.as_dict()[k] for k in ("diff", "ci_low", "ci_high", "lift")},
                "like_rate": {k: lr.as_dict()[k] for k in ("diff", "ci_low", "ci_high", "lift")},
                "z": hr.statistic,
            }
            series.append(point)
            if math.isfinite(hr.statistic):
                looks.append(point)
        seq[arm] = _sequential(looks, opt)
    return {"series": series, "sequential": seq}


def _ratio(c: dict) -> JointStats:
    return JointStats(
        c["n"], c["liked"], c["items"], c["liked_sq"], c["items_sq"], c["liked_items"]
    )


def _sequential(looks: list[dict], opt: Options) -> dict | None:
    if not looks:
        return None
    total = opt.planned_users or looks[-1]["users"]
    fractions, zs, kept = [], [], []
    for p in looks:
        f = min(p["users"] / total, 1.0)
        if fractions and f <= fractions[-1]:
            continue
        fractions.append(f)
        zs.append(p["z"])
        kept.append(p["day"])
    res = sequential_test(zs, fractions, opt.alpha).as_dict()
    res["days"] = kept
    res["planned_users"] = opt.planned_users
    res["complete"] = fractions[-1] >= 1.0
    return res


def _verdict(comp: dict, srm_flagged: bool, opt: Options) -> dict:
    primary = next(r for r in comp["metrics"] if r["metric"] == PRIMARY)
    t = primary["test"]
    seq = comp.get("sequential")
    if opt.planned_users and seq and not seq["complete"]:
        significant = seq["rejected"]
        basis = "group-sequential (O'Brien-Fleming spending), experiment still running"
    else:
        significant = primary["significant"]
        basis = "fixed-horizon Welch t-test, Holm-adjusted across metrics"
    lift = t["lift"]
    lift_txt = (
        f"{lift:+.1%} (95% CI {t['lift_ci_low']:+.1%} … {t['lift_ci_high']:+.1%})"
        if lift is not None and math.isfinite(lift)
        else "n/a"
    )
    if srm_flagged:
        status, text = "invalid", "Sample ratio mismatch: do not trust these results"
    elif significant and t["diff"] > 0:
        status, text = "win", f"{comp['arm']} beats {comp['control']} on HitRate: {lift_txt}"
    elif significant:
        status, text = (
            "loss",
            f"{comp['arm']} is worse than {comp['control']} on HitRate: {lift_txt}",
        )
    else:
        mde = comp.get("mde_primary")
        extra = f"; detectable at 80% power: ±{mde:.1%}" if mde else ""
        status, text = "inconclusive", f"No significant HitRate difference: {lift_txt}{extra}"
    return {"status": status, "text": text, "basis": basis, "p_holm": primary["p_holm"]}
