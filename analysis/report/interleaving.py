"""Rendering of an interleaving report: the terminal table and a self-contained HTML page
(verdict first, the preference with its CIs, team balance per rank as an inline SVG plot)."""

from __future__ import annotations

from feedlab.analysis.report import svg
from feedlab.analysis.report.html import TEMPLATES, fmt_p, fmt_pct0, fmt_v
from feedlab.analysis.report.serialize import clean
from feedlab.analysis.report.table import STYLE, wide_console
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from rich.console import Console
from rich.table import Table


def _preference_plot(phase: dict) -> Markup:
    p = phase["preference"]
    rows = [
        ("t-test", p["delta"], p["delta_ci_low"], p["delta_ci_high"]),
        ("Poisson bootstrap", p["delta"], p["boot_ci_low"], p["boot_ci_high"]),
    ]
    title = f"Δ = {phase['test']} − {phase['control']} credited likes per user, 95% CI"
    return Markup(svg.forest(rows, title, percent=False, width=600))


def _balance_plot(phase: dict) -> Markup:
    rows = [
        (
            f"rank {b['position'] + 1}",
            _off(b["test_share"]),
            _off(b["share_ci_low"]),
            _off(b["share_ci_high"]),
        )
        for b in phase["balance"]
    ]
    title = f"team balance: {phase['test']}'s share of each rank − 50% (95% CI)"
    return Markup(svg.forest(rows, title, percent=True, width=600))


def _off(share: float | None) -> float | None:
    return None if share is None else share - 0.5


def render_interleaving_html(report: dict) -> str:
    """The interleaving report as one HTML string (no external resources)."""
    r = clean(report)
    for phase in r["phases"]:
        phase["preference_plot"] = _preference_plot(phase)
        phase["balance_plot"] = _balance_plot(phase)
    env = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"])
    )
    env.globals.update(fmt_p=fmt_p, fmt_v=fmt_v, fmt_pct0=fmt_pct0)
    return env.get_template("interleaving.html.j2").render(r=r)


def print_interleaving(report: dict, console: Console | None = None) -> None:
    """Verdict lines first, then per phase the preference table and the team balance."""
    console = console or wide_console()
    r = clean(report)
    console.rule(f"experiment {r['experiment']} (interleaving)")
    for p in r["phases"]:
        v = p["verdict"]
        console.print(
            f"[{STYLE[v['status']]}]{v['status'].upper()}[/] phase {p['config_version']}: "
            f"{v['text']}  [dim]({v['basis']})[/]"
        )
    for p in r["phases"]:
        pref = p["preference"]
        console.rule(f"phase {p['config_version']}  {p['start']} → {p['end']}")
        t = Table(title=f"{p['test']} vs {p['control']}: per-user credited likes")
        for col in ("users", "wins / ties / losses", "prefer test [95% CI]", "sign p"):
            t.add_column(col, justify="right")
        for col in ("Δ/user [95% CI]", "t p", "bootstrap CI"):
            t.add_column(col, justify="right")
        t.add_row(
            str(pref["users"]),
            f"{pref['wins']} / {pref['ties']} / {pref['losses']}",
            f"{fmt_pct0(pref['share'])} [{fmt_pct0(pref['share_ci_low'])}, "
            f"{fmt_pct0(pref['share_ci_high'])}]",
            fmt_p(pref["sign_p"]),
            f"{fmt_v(pref['delta'])} [{fmt_v(pref['delta_ci_low'])}, "
            f"{fmt_v(pref['delta_ci_high'])}]",
            fmt_p(pref["t_p"]),
            f"[{fmt_v(pref['boot_ci_low'])}, {fmt_v(pref['boot_ci_high'])}]",
        )
        console.print(t)
        b = Table(title="team balance per rank (exact binomial vs 50%, flagged at p < 0.001)")
        for col in ("rank", p["control"], p["test"], f"{p['test']} share", "p", "flag"):
            b.add_column(col, justify="right")
        for row in p["balance"]:
            b.add_row(
                str(row["position"] + 1),
                str(row["control"]),
                str(row["test"]),
                fmt_pct0(row["test_share"]),
                fmt_p(row["p_value"]),
                "⚠" if row["flagged"] else "ok",
            )
        console.print(b)
        console.print(
            f"exposures {p['exposures']}, fallbacks {p['fallbacks']} "
            f"({fmt_pct0(p['fallback_rate'])}, not credited), {p['qa_exposures_excluded']} QA "
            f"exposures excluded; users needed at "
            f"{p['power']:.0%} power for the observed Δ: {p['users_needed_for_observed_delta']}"
        )
