"""`analyze(engine, experiment)`: per-phase online analysis as a typed `Report`.

Phases (config versions) are analysed separately: a split change between phases makes a
pooled comparison biased (Simpson's paradox), so pooling is refused unless every phase has the
same salt, traffic and weights and the caller asks for it. A config that comes back after
another one ran starts a new segment of its phase, analysed on its own."""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from feedlab.analysis.online import queries
from feedlab.analysis.online.metrics import BY_KEY, METRICS, TEST_NAMES, Metric, metric_test
from feedlab.analysis.online.phase_config import PhaseConfig, load_phase_config
from feedlab.analysis.online.results import (
    AnytimeLook,
    AnytimeSummary,
    ArmSums,
    Capping,
    ComparisonResult,
    CupedResult,
    EffectPoint,
    Health,
    Interval,
    LookSums,
    MetricResult,
    PhaseResult,
    Report,
    SequentialSummary,
    Verdict,
)
from feedlab.analysis.stats.bootstrap import BootstrapResult, poisson_bootstrap
from feedlab.analysis.stats.frequentist import Comparison, cuped_test, mann_whitney
from feedlab.analysis.stats.multiple import CORRECTIONS, adjust_families
from feedlab.analysis.stats.power import minimum_detectable_effect
from feedlab.analysis.stats.sequential import cs_half_width, sequential_test
from feedlab.analysis.stats.srm import srm_test
from feedlab.storage.clock import utcnow
from sqlalchemy import Connection, Engine

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
    planned_days: int | None = None
    """Planned duration: the sequential test's information fraction is days elapsed / this
    (default: the days observed, i.e. the last look is final)."""
    since: datetime | None = None
    until: datetime | None = None
    correction: str = "holm"
    cap: float | None = None
    """Winsorize per-user metrics at this quantile (e.g. 0.999); None = off."""
    new_users_only: bool = False
    """Leave out users carried over from an earlier phase with a different split."""
    anytime: bool = False
    """Decide on the anytime-valid confidence sequence (safe to look at any time)."""
    cs_tune_users: float = 5_000


def attribution_rule(window_s: float) -> str:
    return (
        "Each like is credited once, to the latest exposure that served that post to that "
        f"user at or before the like, if that exposure is less than {window_s:g} s before it "
        "(QA exposures take their credit out of the analysis). An exposure is a hit when at "
        "least one like is credited to it."
    )


@dataclass(frozen=True)
class _Segment:
    """The exposures of one phase (or of pooled phases) to analyse together."""

    spans: list[queries.PhaseSpan]
    config: PhaseConfig
    since: datetime | None
    until: datetime | None
    number: int
    start: datetime
    active_until: datetime | None = None


def analyze(
    engine: Engine,
    experiment: str,
    phase: str | None = None,
    options: Options | None = None,
    pool: bool = False,
) -> Report:
    """Analyse every phase of `experiment` (or only `phase`); see module doc for pooling."""
    opt = options or Options()
    if opt.correction not in CORRECTIONS:
        raise ValueError(f"correction: one of {', '.join(CORRECTIONS)}, got {opt.correction!r}")
    with engine.connect() as conn:
        queries.tune_session(conn)
        queries.refresh_planner_stats(conn)
        spans = queries.list_phases(conn, experiment, opt.since, opt.until)
        if not spans:
            raise LookupError(f"experiment: no exposures logged for {experiment!r}")
        configs = {
            s.config_version: load_phase_config(conn, experiment, s.config_version) for s in spans
        }
        notes: list[str] = []
        # the pre-period ends at the first analysed exposure, whatever the range
        first = (
            spans[0].start
            if opt.since is None
            else queries.first_exposure(conn, experiment) or spans[0].start
        )
        segments = _segments(conn, experiment, spans, configs, opt, notes)
        if pool and len(spans) > 1:
            if len({c.split_key for c in configs.values()}) > 1:
                raise PoolingRefused(
                    "--pool: phases "
                    + ", ".join(configs)
                    + " differ in salt, traffic or weights; pooling them is Simpson's paradox."
                    " Analyse them per phase (the default)."
                )
            last = configs[spans[-1].config_version]
            segments = [_Segment(spans, last, opt.since, opt.until, 1, spans[0].start)]
            notes.append(f"pooled {len(spans)} phases with identical split")
        elif len(segments) > 1:
            notes.append(
                f"{len(segments)} phase segments reported separately"
                + (
                    " (their splits differ; never pool them)"
                    if len({c.split_key for c in configs.values()}) > 1
                    else ""
                )
            )
        if phase is not None:
            segments = [s for s in segments if s.config.config_version == phase]
            if not segments:
                raise LookupError(f"--phase: no exposures of {experiment!r} under {phase!r}")
        results = [
            _analyze_segment(
                conn, experiment, seg, opt, _earlier_splits(spans, configs, seg), first
            )
            for seg in segments
        ]
    return Report(
        experiment,
        utcnow().replace(microsecond=0),
        opt.window_s,
        opt.alpha,
        opt.correction,
        attribution_rule(opt.window_s),
        opt.since,
        opt.until,
        notes,
        results,
    )


def analyze_versions(
    engine: Engine, experiment: str, versions: list[str], options: Options | None = None
) -> PhaseResult:
    """One analysis over the given versions taken as a single sample, with no split check:
    the building block of `analyze`, exposed so tests can show what naive pooling does."""
    opt = options or Options()
    with engine.connect() as conn:
        queries.tune_session(conn)
        spans = [
            s
            for s in queries.list_phases(conn, experiment, opt.since, opt.until)
            if s.config_version in versions
        ]
        cfg = load_phase_config(conn, experiment, spans[-1].config_version)
        seg = _Segment(spans, cfg, opt.since, opt.until, 1, spans[0].start)
        first = queries.first_exposure(conn, experiment) or spans[0].start
        return _analyze_segment(conn, experiment, seg, opt, [], first)


def _segments(
    conn: Connection,
    experiment: str,
    spans: list[queries.PhaseSpan],
    configs: dict[str, PhaseConfig],
    opt: Options,
    notes: list[str],
) -> list[_Segment]:
    """Each version's exposures, split where the version came back after another version
    ran in between (a restored YAML): the first exposure after each such run starts a new
    segment. Overlaps while workers switch configs do not split."""
    out: list[_Segment] = []
    for s in spans:
        returns = sorted(o.end for o in spans if o is not s and o.start > s.start and o.end < s.end)
        cuts = queries.segment_starts(
            conn, experiment, s.config_version, returns, opt.since, opt.until
        )
        bounds = [opt.since, *cuts, opt.until]
        starts = [s.start, *cuts]
        cfg = configs[s.config_version]
        out += [
            _Segment([s], cfg, bounds[k], bounds[k + 1], k + 1, starts[k])
            for k in range(len(starts))
        ]
        if cuts:
            notes.append(
                f"config {s.config_version} came back after another config ran: "
                f"{len(cuts) + 1} segments, each analysed on its own"
            )
    out.sort(key=lambda seg: seg.start)
    # a segment is active until the next one starts
    return [replace(seg, active_until=nxt.start) for seg, nxt in itertools.pairwise(out)] + out[-1:]


def _earlier_splits(
    spans: list[queries.PhaseSpan], configs: dict[str, PhaseConfig], seg: _Segment
) -> list[str]:
    """Versions that ran before this segment with a different split."""
    start = min(s.start for s in seg.spans)
    key = seg.config.split_key
    return [
        s.config_version
        for s in spans
        if s.start < start and configs[s.config_version].split_key != key
    ]


class _Timer:
    """Wall time per analysis step, reported beside the results (the benchmark prints it)."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.spent[step] = self.spent.get(step, 0.0) + time.perf_counter() - start


def _day_label(day: int) -> str:
    return (EPOCH + timedelta(days=day)).isoformat()


def _day_number(ts: datetime) -> int:
    return (ts.date() - EPOCH).days


def _analyze_segment(
    conn: Connection,
    experiment: str,
    seg: _Segment,
    opt: Options,
    earlier: list[str],
    first_exposure: datetime,
) -> PhaseResult:
    cfg = seg.config
    versions = tuple(s.config_version for s in seg.spans)
    sel = queries.Selection(experiment, versions, seg.since, seg.until, seg.active_until)
    whole = seg.since == opt.since and seg.until == opt.until and seg.active_until is None
    if whole:  # the versions' spans are the sample's: no need to scan again
        lo, hi = min(s.start for s in seg.spans), max(s.end for s in seg.spans)
        n_exposures = sum(s.exposures for s in seg.spans)
    else:
        lo, hi, n_exposures = queries.sample_span(conn, sel)
    first = first_exposure
    length = hi - lo
    pre = (first - length, first) if opt.cuped and length > timedelta(0) else None
    ws = queries.Workspace(conn)
    timer = _Timer()
    arms = [a.name for a in cfg.arms]
    control = "control" if "control" in arms else arms[0]
    try:
        with timer("credited likes and per-user-day pass (SQL)"):
            ws.build_user_days(sel, lo, hi, opt.window_s, _day_number(hi))
        with timer("per-user table, CUPED pre-period, health checks (SQL)"):
            ws.build_users(opt.window_s, pre)
            multi = ws.users_in(ws.multi_arm_users(), drop=True)
            carried = (
                ws.users_in(queries.carried_over(experiment, earlier, lo), drop=opt.new_users_only)
                if earlier
                else 0
            )
            caps, cut = ws.cap(opt.cap) if opt.cap is not None else ({}, {})
        with timer("per-arm sufficient statistics (SQL)"):
            sums = ws.arm_sums()
        srm = srm_test({a: int(s.n) for a, s in sums.items() if a in arms}, cfg.weights)
        decision = BY_KEY[cfg.primary_metric]
        treated = [a for a in arms if a != control and a in sums and control in sums]
        raw = {arm: _compare(ws, sums, control, arm, opt, timer) for arm in treated}
        with timer("daily looks and effects (SQL)"):
            cumulative, alone = ws.daily_sums(_day_label)
            looks, days = _by_arm(cumulative), _by_arm(alone)
        with timer("guardrails (SQL percentiles)"):
            guard = queries.guardrails(conn, sel, sorted(sums))
        qa = (
            sum(s.qa_exposures for s in seg.spans)
            if whole
            else queries.count_exposures(conn, sel.condition(qa=True))
        )
        late = sel.condition(late=True)
        off_time = queries.count_exposures(conn, late) if seg.active_until else 0
        outside = _outside_range(conn, experiment, versions, seg, opt)
    finally:
        ws.close()
    metric_results = _adjust(raw, decision, opt)
    n_days = _day_number(hi) - _day_number(lo) + 1
    planned = opt.planned_days or n_days
    comparisons = []
    effects: list[EffectPoint] = []
    for arm in treated:
        cum = _effects(decision, looks.get(control, []), looks.get(arm, []), arm, "cumulative", opt)
        effects += cum + _effects(
            decision, days.get(control, []), days.get(arm, []), arm, "day", opt
        )
        seq = _sequential(cum, _day_number(lo), planned, opt)
        anytime = _anytime(cum, opt)
        metrics = metric_results[arm]
        mde = _mde(decision, sums[control], sums[arm], metrics, opt)
        verdict = _verdict(arm, control, decision, metrics, seq, anytime, srm.flagged, mde, opt)
        comparisons.append(ComparisonResult(arm, control, metrics, mde, seq, anytime, verdict))
    health = Health(
        srm,
        multi,
        carried,
        opt.new_users_only and carried > 0,
        qa,
        outside,
        off_time,
        sorted(set(sums) - set(arms)),
    )
    return PhaseResult(
        cfg.config_version,
        list(versions),
        cfg.loaded_at,
        cfg.salt,
        cfg.traffic,
        list(cfg.arms),
        decision.key,
        seg.number,
        lo,
        hi,
        list(pre) if pre else None,
        n_exposures,
        {a: int(s.n) for a, s in sums.items()},
        control,
        health,
        _warnings(health, cfg),
        Capping(opt.cap, caps, cut),
        comparisons,
        guard,
        effects,
        timer.spent,
    )


def _outside_range(
    conn: Connection, experiment: str, versions: tuple[str, ...], seg: _Segment, opt: Options
) -> int:
    """Non-QA exposures of the phase left out by --from/--to (reported, never pooled in)."""
    if opt.since is None and opt.until is None:
        return 0
    everything = queries.Selection(experiment, versions)
    return queries.count_exposures(conn, everything.condition()) - queries.count_exposures(
        conn, queries.Selection(experiment, versions, opt.since, opt.until).condition()
    )


def _warnings(h: Health, cfg: PhaseConfig) -> list[str]:
    out = []
    if h.srm.flagged:
        out.append(
            f"SRM: users per arm {h.srm.observed} do not match weights {cfg.weights} "
            f"(chi-square p = {h.srm.p_value:.2e} < 0.001); metrics of this phase are not "
            "trustworthy"
        )
    if h.multi_arm_users_excluded:
        out.append(
            f"{h.multi_arm_users_excluded} users were exposed in more than one arm of this "
            "phase; they are excluded from the comparison"
        )
    if h.carried_over_users:
        out.append(
            f"{h.carried_over_users} users carried over from an earlier phase with a different "
            "split" + ("; excluded (--new-users-only)" if h.carried_over_excluded else "; included")
        )
    if h.unknown_groups:
        out.append(f"exposures with exp_group not in the config: {h.unknown_groups}")
    return out


def _by_arm(rows: list[tuple[str, LookSums]]) -> dict[str, list[LookSums]]:
    out: dict[str, list[LookSums]] = {}
    for arm, s in rows:
        out.setdefault(arm, []).append(s)
    return out


@dataclass(frozen=True)
class _Raw:
    metric: Metric
    test: Comparison
    cuped: CupedResult | None
    mann_whitney: Comparison | None
    bootstrap: BootstrapResult | None
    sd_control: float | None


def _compare(
    ws: queries.Workspace,
    sums: dict[str, ArmSums],
    control: str,
    arm: str,
    opt: Options,
    timer: _Timer,
) -> list[_Raw]:
    a, b = sums[control], sums[arm]
    with timer("user-bucket sums for the bootstrap (SQL)"):
        ba, bb = ws.bucket_sums(control, opt.boot_buckets), ws.bucket_sums(arm, opt.boot_buckets)
    out = []
    for i, m in enumerate(METRICS):
        main = metric_test(m, a, b, opt.alpha)
        cuped = mw = boot = sd = None
        if m.kind != "proportion":
            num, den = (m.column, "items") if m.kind == "ratio" else (m.column, None)
            with timer("Poisson bootstrap (numpy)"):
                boot = poisson_bootstrap(
                    ba.column(num),
                    bb.column(num),
                    ba.column(den) if den else ba.users,
                    bb.column(den) if den else bb.users,
                    n_boot=opt.n_boot,
                    alpha=opt.alpha,
                    seed=opt.seed + i,
                )
        if m.kind == "mean":
            with timer("Mann-Whitney ranks (SQL windows)"):
                rank_sum, ties = ws.rank_sums(m.column, control, arm)
            mw = mann_whitney(a.n, b.n, rank_sum, ties, main.mean_control, main.mean_test)
            if opt.cuped:
                cuped = _cuped(a, b, m.column, opt.alpha)
            sd = math.sqrt(a.mean(m.column).var) if a.n > 1 else None
        out.append(_Raw(m, main, cuped, mw, boot, sd))
    return out


def _cuped(a: ArmSums, b: ArmSums, column: str, alpha: float) -> CupedResult:
    if a.has_pre + b.has_pre == 0:
        return CupedResult(False, "no user has pre-period data", [], None)
    res = cuped_test(a.regression(column), b.regression(column), alpha)
    return CupedResult(res.applied, res.reason, list(res.theta), res.result)


def _adjust(
    raw: dict[str, list[_Raw]], decision: Metric, opt: Options
) -> dict[str, list[MetricResult]]:
    """The decision metric at full alpha (corrected across arms only when there are several
    treatment arms); the secondary metrics corrected as one family across metrics and arms."""
    cells = [(arm, r) for arm, rows in raw.items() for r in rows]
    dec = [(arm, r) for arm, r in cells if r.metric.key == decision.key]
    sec = [(arm, r) for arm, r in cells if r.metric.key != decision.key]
    p_dec, p_sec = adjust_families(
        [r.test.p_value for _, r in dec], [r.test.p_value for _, r in sec], opt.correction
    )
    adjusted = {
        (arm, r.metric.key): p for (arm, r), p in zip([*dec, *sec], [*p_dec, *p_sec], strict=True)
    }
    return {
        arm: [
            MetricResult(
                r.metric.key,
                r.metric.label,
                r.metric.kind,
                "decision" if r.metric.key == decision.key else "secondary",
                r.test,
                adjusted[(arm, r.metric.key)],
                adjusted[(arm, r.metric.key)] < opt.alpha,
                r.cuped,
                r.mann_whitney,
                r.bootstrap,
                r.sd_control,
            )
            for r in rows
        ]
        for arm, rows in raw.items()
    }


def _effects(
    metric: Metric, ca: list[LookSums], cb: list[LookSums], arm: str, kind: str, opt: Options
) -> list[EffectPoint]:
    out = []
    by_day = {s.day: s for s in ca}
    for b in cb:
        a = by_day.get(b.day)
        if a is None or a.n < 2 or b.n < 2:
            continue
        t = metric_test(metric, a, b, opt.alpha)
        effect = Interval(t.diff, t.ci_low, t.ci_high, t.lift)
        out.append(EffectPoint(arm, b.day, kind, int(a.n + b.n), effect, t.statistic, t.se))
    return out


def _sequential(
    cum: list[EffectPoint], first_day: int, planned: int, opt: Options
) -> SequentialSummary | None:
    """O'Brien-Fleming over the daily looks; information fraction = days elapsed / planned.
    A look without variance (e.g. no like yet in either arm) counts as z = 0: no evidence."""
    fractions: list[float] = []
    zs: list[float] = []
    days: list[str] = []
    for p in cum:
        f = min((_day_number(datetime.fromisoformat(p.day)) - first_day + 1) / planned, 1.0)
        if fractions and f <= fractions[-1]:
            continue
        fractions.append(f)
        zs.append(p.z if math.isfinite(p.z) else 0.0)
        days.append(p.day)
    if not fractions:
        return None
    res = sequential_test(zs, fractions, opt.alpha)
    return SequentialSummary(res, days, planned, fractions[-1] >= 1.0)


def _anytime(cum: list[EffectPoint], opt: Options) -> AnytimeSummary | None:
    if not opt.anytime or not cum:
        return None
    looks = []
    first = None
    for p in cum:
        h = cs_half_width(p.se, p.users, opt.alpha, opt.cs_tune_users)
        look = AnytimeLook(p.day, p.users, p.effect.diff, p.effect.diff - h, p.effect.diff + h)
        looks.append(look)
        if first is None and (look.cs_low > 0 or look.cs_high < 0):
            first = p.day
    return AnytimeSummary(opt.cs_tune_users, looks, first is not None, first)


def _mde(
    metric: Metric, a: ArmSums, b: ArmSums, metrics: list[MetricResult], opt: Options
) -> float | None:
    """Smallest relative effect on the decision metric detected with 80% power at these
    sizes, by the same normal approximation as `--plan`."""
    r = next(m for m in metrics if m.metric == metric.key)
    mean = r.test.mean_control
    if not mean or not math.isfinite(mean) or a.n < 2 or b.n < 2:
        return None
    if metric.kind == "mean":
        sd = r.sd_control
    elif metric.kind == "ratio":
        sd = r.test.se * math.sqrt(a.n * b.n / (a.n + b.n)) if r.test.se else None
    else:
        sd = None
    if metric.kind != "proportion" and not sd:
        return None
    try:
        return minimum_detectable_effect(mean, a.n, b.n, opt.alpha, 0.8, sd=sd)
    except ValueError:
        return None


def _verdict(
    arm: str,
    control: str,
    metric: Metric,
    metrics: list[MetricResult],
    seq: SequentialSummary | None,
    anytime: AnytimeSummary | None,
    srm_flagged: bool,
    mde: float | None,
    opt: Options,
) -> Verdict:
    r = next(m for m in metrics if m.metric == metric.key)
    t = r.test
    test_name = TEST_NAMES[metric.kind]
    if anytime is not None:
        significant = anytime.rejected
        basis = "anytime-valid confidence sequence (asymptotic), safe at any look"
    elif opt.planned_days and seq and not seq.complete:
        significant = seq.test.rejected
        basis = "group-sequential (O'Brien-Fleming spending), experiment still running"
    else:
        significant = r.significant
        basis = f"fixed-horizon {test_name} on the decision metric at α = {opt.alpha:g}"
        if r.p_adjusted != t.p_value:
            basis += f", {opt.correction}-adjusted across arms"
    label = metric.label.split(" (")[0]
    lift_txt = _lift_text(t)
    if srm_flagged:
        return Verdict(
            "invalid",
            "Sample ratio mismatch: do not trust these results",
            basis,
            metric.key,
            r.p_adjusted,
        )
    if significant and t.diff > 0:
        return Verdict(
            "win", f"{arm} beats {control} on {label}: {lift_txt}", basis, metric.key, r.p_adjusted
        )
    if significant:
        return Verdict(
            "loss",
            f"{arm} is worse than {control} on {label}: {lift_txt}",
            basis,
            metric.key,
            r.p_adjusted,
        )
    extra = f"; detectable at 80% power: ±{mde:.1%}" if mde else ""
    return Verdict(
        "inconclusive",
        f"No significant {label} difference: {lift_txt}{extra}",
        basis,
        metric.key,
        r.p_adjusted,
    )


def _lift_text(t: Comparison) -> str:
    if not math.isfinite(t.lift):
        return "n/a"
    if t.lift_ci_kind == "bounded":
        ci = f"{t.lift_ci_low:+.1%} … {t.lift_ci_high:+.1%}"
    elif t.lift_ci_kind == "exterior":
        ci = f"below {t.lift_ci_low:+.1%} or above {t.lift_ci_high:+.1%}"
    else:
        ci = "unbounded"
    return f"{t.lift:+.1%} (CI {ci})"
