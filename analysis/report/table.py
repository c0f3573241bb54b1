"""Terminal rendering with rich: the verdict on the decision metric, the health checks, then
one table per comparison."""

from __future__ import annotations

from typing import Any

from feedlab.analysis.online.results import PhaseResult, Report
from feedlab.analysis.report.html import (
    comparison_notes,
    fmt_ci,
    fmt_ms,
    fmt_p,
    fmt_pct,
    fmt_pct0,
    fmt_v,
    health_lines,
)
from feedlab.analysis.stats.power import Plan
from rich.console import Console
from rich.table import Table

MIN_WIDTH = 120
"""Below this a metric table wraps its names into ambiguity (`like_ra…`), so pipes and narrow
terminals get at least this width."""
STYLE = {"win": "bold green", "loss": "bold red", "inconclusive": "bold", "invalid": "bold yellow"}


def wide_console() -> Console:
    width = Console().width
    return Console(width=max(width, MIN_WIDTH))


def caption(r: Report) -> str:
    return (
        f"decision metric at full α = {r.alpha:g}; secondary metrics {r.correction}-adjusted as "
        "one family; CUPED: pre-period covariate (— = not applied); MWU: Mann-Whitney U"
    )


def print_report(report: Report, console: Console | None = None) -> None:
    console = console or wide_console()
    r = report
    console.rule(f"experiment {r.experiment}")
    for p in r.phases:
        for c in p.comparisons:
            v = c.verdict
            head = f"[{STYLE[v.status]}]{v.status.upper()}[/] {_name(p)}"
            console.print(f"{head}: {v.text}  [dim]({v.basis})[/]")
    for p in r.phases:
        for line, ok in health_lines(p):
            console.print(f"[green]✓ {line}[/]" if ok else f"[bold yellow]⚠ {line}[/]")
    for note in r.notes:
        console.print(f"[dim]{note}[/]")
    console.print(f"[dim]{r.attribution}[/]")
    for p in r.phases:
        console.rule(
            f"{_name(p)}  {p.start.isoformat()} → {p.end.isoformat()}  salt={p.salt!r}  "
            f"weights={p.weights}"
        )
        console.print(f"users {p.users}; {_cap_text(p)}")
        for c in p.comparisons:
            t = Table(title=f"{c.arm} vs {c.control}", caption=caption(r))
            t.add_column("metric (* decision)", no_wrap=True)
            for col in (c.control, c.arm, "lift [CI]", "method"):
                t.add_column(col, justify="right", no_wrap=col == "lift [CI]")
            for col in ("p", "adj. p", "CUPED p", "MWU p"):
                t.add_column(col, justify="right")
            for m in c.metrics:
                s = m.test
                adjusted = fmt_p(m.p_adjusted)
                t.add_row(
                    f"{m.metric} *" if m.role == "decision" else m.metric,
                    fmt_v(s.mean_control),
                    fmt_v(s.mean_test),
                    f"{fmt_pct(s.lift)} {fmt_ci(s)}",
                    s.method,
                    fmt_p(s.p_value),
                    f"[green]{adjusted}[/]" if m.significant else adjusted,
                    fmt_p(m.cuped.result.p_value) if m.cuped and m.cuped.result else "—",
                    fmt_p(m.mann_whitney.p_value) if m.mann_whitney else "—",
                )
            console.print(t)
            for line in comparison_notes(c):
                console.print(f"[dim]{line}[/]")
        g = Table(title="guardrails")
        for col in ("arm", "exposures", "fallback rate", "latency p50", "latency p95"):
            g.add_column(col, justify="left" if col == "arm" else "right")
        for arm, row in sorted(p.guardrails.items()):
            g.add_row(
                arm,
                str(row.exposures),
                fmt_pct0(row.fallback_rate),
                fmt_ms(row.latency_p50_ms),
                fmt_ms(row.latency_p95_ms),
            )
        console.print(g)


def _name(p: PhaseResult) -> str:
    return f"phase {p.config_version}" + (f" (segment {p.segment})" if p.segment > 1 else "")


def _cap_text(p: PhaseResult) -> str:
    if p.capping.quantile is None:
        return "capping off (per-user metrics not winsorized)"
    caps = ", ".join(
        f"{k} ≤ {fmt_v(v)} ({p.capping.capped_users.get(k, 0)} users)"
        for k, v in p.capping.caps.items()
    )
    return f"capped at the {p.capping.quantile:g} quantile: {caps}"


def print_plan(plan: Plan, mde: float | None, console: Console | None = None) -> None:
    console = console or wide_console()
    metric = "a mean metric (sd given)" if plan.sd is not None else "a proportion"
    t = Table(
        title="experiment plan",
        caption=f"two-sided test of {metric} at full α: the test the report's verdict uses "
        "on the decision metric (no multiplicity correction); normal approximation",
    )
    t.add_column("quantity")
    t.add_column("value", justify="right")
    rows = {
        "baseline": f"{plan.baseline:.4g}",
        "sd": "— (proportion)" if plan.sd is None else f"{plan.sd:.4g}",
        "mde (relative lift)": f"{plan.mde:+.2%}",
        "alpha (two-sided)": f"{plan.alpha:g}",
        "power": f"{plan.power:g}",
        "test share": f"{plan.test_share:g}",
        "users in control": f"{plan.n_control:,}",
        "users in test": f"{plan.n_test:,}",
        "users in total": f"{plan.n_total:,}",
        "days": "—" if plan.days is None else f"{plan.days:.1f}",
    }
    for k, v in rows.items():
        t.add_row(k, v)
    if mde is not None:
        t.add_row("MDE at the given users (relative lift)", f"{mde:.2%}")
    console.print(t)


def print_mapping(title: str, mapping: dict[str, Any], console: Console | None = None) -> None:
    """Quantity / value rows of a plain mapping (e.g. the interleaving design's plan)."""
    console = console or wide_console()
    t = Table(title=title)
    t.add_column("quantity")
    t.add_column("value", justify="right")
    for k, v in mapping.items():
        t.add_row(k, "—" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v)))
    console.print(t)
