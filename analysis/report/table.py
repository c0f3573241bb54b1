"""Terminal rendering with rich: SRM and verdict first, then one table per comparison."""

from __future__ import annotations

from feedlab.analysis.report.html import fmt_ms, fmt_p, fmt_pct, fmt_pct0, fmt_v
from feedlab.analysis.report.serialize import clean
from rich.console import Console
from rich.table import Table

CAPTION = (
    "p: Welch (means), delta method (like_rate), z-test (converted); Holm across metrics; "
    "CUPED: pre-period covariate; MWU: Mann-Whitney U"
)
MIN_WIDTH = 120
"""Below this a metric table wraps its names into ambiguity (`like_ra…`), so pipes and narrow
terminals get at least this width."""
STYLE = {"win": "bold green", "loss": "bold red", "inconclusive": "bold", "invalid": "bold yellow"}


def wide_console() -> Console:
    width = Console().width
    return Console(width=max(width, MIN_WIDTH))


def print_report(report: dict, console: Console | None = None) -> None:
    console = console or wide_console()
    r = clean(report)
    console.rule(f"experiment {r['experiment']}")
    for p in r["phases"]:
        if p["srm"]["flagged"]:
            weights = [a["weight"] for a in p["config"]["arms"]]
            console.print(
                f"[bold white on red] SRM in phase {p['config']['config_version']}: users "
                f"{p['srm']['observed']} vs weights {weights} "
                f"(p = {fmt_p(p['srm']['p_value'])}) — do not trust this phase [/]"
            )
    for p in r["phases"]:
        for c in p["comparisons"]:
            v = c["verdict"]
            console.print(
                f"[{STYLE[v['status']]}]{v['status'].upper()}[/] phase "
                f"{p['config']['config_version']}: {v['text']}  [dim]({v['basis']})[/]"
            )
    for note in r["notes"]:
        console.print(f"[dim]{note}[/]")
    for p in r["phases"]:
        cfg = p["config"]
        console.rule(
            f"phase {cfg['config_version']}  {p['start']} → {p['end']}  salt={cfg['salt']!r}  "
            f"weights={ {a['name']: a['weight'] for a in cfg['arms']} }"
        )
        console.print(f"SRM p = {fmt_p(p['srm']['p_value'])}, users {p['users']}")
        for w in p["warnings"]:
            console.print(f"[yellow]⚠ {w}[/]")
        for c in p["comparisons"]:
            t = Table(title=f"{c['arm']} vs {c['control']}", caption=CAPTION)
            t.add_column("metric", no_wrap=True)
            for col in (c["control"], c["arm"], "lift [95% CI]"):
                t.add_column(col, justify="right")
            for col in ("p", "Holm p", "CUPED p", "MWU p"):
                t.add_column(col, justify="right")
            for m in c["metrics"]:
                s = m["test"]
                t.add_row(
                    m["metric"],
                    fmt_v(s["mean_control"]),
                    fmt_v(s["mean_test"]),
                    f"{fmt_pct(s['lift'])} [{fmt_pct(s['lift_ci_low'])}, "
                    f"{fmt_pct(s['lift_ci_high'])}]",
                    fmt_p(s["p_value"]),
                    f"[green]{fmt_p(m['p_holm'])}[/]" if m["significant"] else fmt_p(m["p_holm"]),
                    fmt_p(m["cuped"]["p_value"]) if m.get("cuped") else "—",
                    fmt_p(m["mann_whitney"]["p_value"]) if m.get("mann_whitney") else "—",
                )
            console.print(t)
        g = Table(title="guardrails")
        for col in ("arm", "exposures", "fallback rate", "latency p50", "latency p95"):
            g.add_column(col, justify="left" if col == "arm" else "right")
        for arm, row in sorted(p["guardrails"].items()):
            g.add_row(
                arm,
                str(row["exposures"]),
                fmt_pct0(row["fallback_rate"]),
                fmt_ms(row["latency_p50_ms"]),
                fmt_ms(row["latency_p95_ms"]),
            )
        console.print(g)


def print_plan(plan: dict, mde: float | None, console: Console | None = None) -> None:
    console = console or wide_console()
    t = Table(title="experiment plan (two-sided z-test, normal approximation)")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    for k, v in plan.items():
        t.add_row(k, "—" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v)))
    if mde is not None:
        t.add_row("MDE at the given users (relative)", f"{mde:.2%}")
    console.print(t)
