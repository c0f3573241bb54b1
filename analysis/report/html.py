"""Self-contained HTML report: the verdict on the decision metric first, then the health
checks, then the effect over time (per day beside cumulative), then per-metric details,
guardrails and the exact config. Inline CSS and SVG only, so it opens offline."""

from __future__ import annotations

import math
from pathlib import Path

from feedlab.analysis.online.results import (
    ComparisonResult,
    EffectPoint,
    MetricResult,
    PhaseResult,
    Report,
    SequentialSummary,
)
from feedlab.analysis.report import svg
from feedlab.analysis.stats.frequentist import Comparison
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

TEMPLATES = Path(__file__).parent / "templates"


def _ok(v: object) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def fmt_p(v: float | None) -> str:
    """p-values with four decimals throughout, so a column lines up."""
    if v is None or not _ok(v):
        return "—"
    return "<0.0001" if v < 1e-4 else f"{v:.4f}"


def fmt_v(v: float | None) -> str:
    """Means with four decimals below 10, two above: one precision per magnitude."""
    if v is None or not _ok(v):
        return "—"
    return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"


def fmt_pct(v: float | None) -> str:
    return f"{v:+.1%}" if _ok(v) else "—"


def fmt_pct0(v: float | None) -> str:
    return f"{v:.1%}" if _ok(v) else "—"


def fmt_ms(v: float | None) -> str:
    return f"{v:.1f} ms" if _ok(v) else "—"


def fmt_ci(t: Comparison) -> str:
    """The lift's confidence set: an interval, the outside of one, or unbounded."""
    if t.lift_ci_kind == "bounded":
        return f"[{fmt_pct(t.lift_ci_low)}, {fmt_pct(t.lift_ci_high)}]"
    if t.lift_ci_kind == "exterior":
        return f"(≤ {fmt_pct(t.lift_ci_low)} or ≥ {fmt_pct(t.lift_ci_high)})"
    return "[unbounded]"


def health_lines(p: PhaseResult) -> list[tuple[str, bool]]:
    """(text, passed) for each health check of a phase, in the order the report shows them."""
    h = p.health
    name = f"phase {p.config_version}"
    srm = (
        f"{name}: sample ratio {'MISMATCH' if h.srm.flagged else 'ok'}: users {h.srm.observed} "
        f"vs weights {p.weights} (p = {fmt_p(h.srm.p_value)})",
        not h.srm.flagged,
    )
    out = [srm]
    out.append(
        (
            f"{name}: {h.multi_arm_users_excluded} users seen in more than one arm "
            "(excluded from the comparison)",
            h.multi_arm_users_excluded == 0,
        )
    )
    state = "excluded (--new-users-only)" if h.carried_over_excluded else "included"
    out.append(
        (
            f"{name}: {h.carried_over_users} users carried over from an earlier phase with a "
            f"different split ({state})",
            h.carried_over_users == 0 or h.carried_over_excluded,
        )
    )
    out.append((f"{name}: {h.qa_exposures_excluded} QA exposures excluded", True))
    if h.outside_range_exposures:
        out.append(
            (f"{name}: {h.outside_range_exposures} exposures outside --from/--to left out", True)
        )
    if h.outside_active_time_exposures:
        out.append(
            (
                f"{name}: {h.outside_active_time_exposures} exposures served while another "
                "config was active (left out)",
                False,
            )
        )
    if h.unknown_groups:
        out.append((f"{name}: exposures in groups not in the config: {h.unknown_groups}", False))
    return out


def comparison_notes(c: ComparisonResult) -> list[str]:
    """What the table of a comparison does not show: CUPED not applied, the sequential test,
    the confidence sequence and the minimum detectable effect."""
    out = []
    skipped = {m.cuped.reason for m in c.metrics if m.cuped and not m.cuped.applied}
    for reason in sorted(r for r in skipped if r):
        names = [m.metric for m in c.metrics if m.cuped and m.cuped.reason == reason]
        out.append(f"CUPED not applied to {', '.join(names)}: {reason}")
    seq = c.sequential
    if seq:
        crossed = (
            f"boundary crossed on {seq.days[seq.test.first_crossing]}"
            if seq.test.first_crossing is not None
            else "no boundary crossed"
        )
        zs = ", ".join(
            f"{d}: z {z:+.2f} / ±{b:.2f}"
            for d, z, b in zip(seq.days, seq.test.z, seq.test.boundaries, strict=True)
        )
        out.append(
            f"group-sequential (O'Brien-Fleming) over {len(seq.days)} daily looks of a planned "
            f"{seq.planned_days} days, each from the data available then: {crossed} ({zs})"
        )
    if c.anytime:
        state = (
            f"excludes 0 from {c.anytime.first_rejection}"
            if c.anytime.rejected
            else "still contains 0"
        )
        out.append(f"anytime-valid confidence sequence: {state}")
    if c.mde_decision:
        out.append(
            f"minimum detectable lift of the decision metric at 80% power: ±{c.mde_decision:.1%}"
        )
    d = next(m for m in c.metrics if m.role == "decision")
    if d.kind != "ratio" and _ok(d.test.mean_control):
        sd = f" --sd {d.sd_control:.4g}" if d.kind == "mean" and d.sd_control else ""
        out.append(
            "size the next run for the same test: feedlab analyze --plan "
            f"--baseline {d.test.mean_control:.4g}{sd} --mde 0.05"
        )
    return out


def _metric_plot(m: MetricResult) -> Markup:
    t = m.test
    rows = (
        [(t.method, t.lift, t.lift_ci_low, t.lift_ci_high)] if t.lift_ci_kind == "bounded" else []
    )
    c = m.cuped.result if m.cuped else None
    if c is not None and c.lift_ci_kind == "bounded":
        rows.append(("CUPED", c.lift, c.lift_ci_low, c.lift_ci_high))
    if m.bootstrap:
        b = m.bootstrap
        rows.append(("Poisson bootstrap", t.lift, b.lift_ci_low, b.lift_ci_high))
    return Markup(svg.forest(rows, f"{m.label}: relative lift, CI", width=540))


def _effect_plot(points: list[EffectPoint], title: str) -> Markup:
    days = [p.day for p in points]
    band = [(p.effect.diff, p.effect.ci_low, p.effect.ci_high) for p in points]
    return Markup(svg.line_band(days, {"difference": band}, title, percent=False, width=540))


def _sequential_plot(seq: SequentialSummary | None) -> Markup:
    if not seq:
        return Markup("")
    z = [(v, v, v) for v in seq.test.z]
    return Markup(
        svg.line_band(
            seq.days,
            {"z": z},
            "Sequential test: z vs O'Brien-Fleming boundary",
            percent=False,
            width=540,
            dashed={
                "+boundary": seq.test.boundaries,
                "−boundary": [-b for b in seq.test.boundaries],
            },
        )
    )


def _plots(p: PhaseResult, c: ComparisonResult) -> dict[str, Markup]:
    mine = [e for e in p.effects if e.arm == c.arm]
    label = next(m.label for m in c.metrics if m.role == "decision").split(" (")[0]
    return {
        "day": _effect_plot(
            [e for e in mine if e.kind == "day"],
            f"{label}: per-day difference",
        ),
        "cumulative": _effect_plot(
            [e for e in mine if e.kind == "cumulative"],
            f"{label}: cumulative difference, as known each day",
        ),
        "sequential": _sequential_plot(c.sequential),
        "metrics": Markup("").join(_metric_plot(m) for m in c.metrics),
    }


def render_html(report: Report) -> str:
    """The report as one HTML string (no external resources)."""
    plots = {
        (p.config_version, p.segment, c.arm): _plots(p, c)
        for p in report.phases
        for c in p.comparisons
    }
    env = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"])
    )
    env.globals.update(
        fmt_p=fmt_p,
        fmt_v=fmt_v,
        fmt_pct=fmt_pct,
        fmt_pct0=fmt_pct0,
        fmt_ms=fmt_ms,
        fmt_ci=fmt_ci,
        health_lines=health_lines,
        comparison_notes=comparison_notes,
    )
    return env.get_template("report.html.j2").render(r=report, plots=plots)
