"""Self-contained HTML report: verdict first, SRM banner, per-metric CI plots, cumulative
effect, guardrails and the exact config. Inline CSS and SVG only, so it opens offline."""

from __future__ import annotations

import math
from pathlib import Path

from feedlab.analysis.report import svg
from feedlab.analysis.report.serialize import clean
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

TEMPLATES = Path(__file__).parent / "templates"


def _ok(v) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def fmt_p(v) -> str:
    return "—" if not _ok(v) else ("<1e-6" if v < 1e-6 else f"{v:.3g}")


def fmt_v(v) -> str:
    return f"{v:.4g}" if _ok(v) else "—"


def fmt_pct(v) -> str:
    return f"{v:+.1%}" if _ok(v) else "—"


def fmt_pct0(v) -> str:
    return f"{v:.1%}" if _ok(v) else "—"


def fmt_ms(v) -> str:
    return f"{v:.1f} ms" if _ok(v) else "—"


def _metric_plot(m: dict) -> Markup:
    t = m["test"]
    rows = [(t["method"], t["lift"], t["lift_ci_low"], t["lift_ci_high"])]
    if m.get("cuped"):
        c = m["cuped"]
        rows.append(("CUPED", c["lift"], c["lift_ci_low"], c["lift_ci_high"]))
    if m.get("bootstrap"):
        b = m["bootstrap"]
        rows.append(("Poisson bootstrap", t["lift"], b["lift_ci_low"], b["lift_ci_high"]))
    return Markup(svg.forest(rows, f"{m['label']}: relative lift, 95% CI", width=540))


def _cumulative(series: list[dict], arm: str) -> Markup:
    pts = [p for p in series if p["arm"] == arm]
    days = [p["day"] for p in pts]
    hr = [(p["hitrate"]["diff"], p["hitrate"]["ci_low"], p["hitrate"]["ci_high"]) for p in pts]
    lr = [
        (p["like_rate"]["diff"], p["like_rate"]["ci_low"], p["like_rate"]["ci_high"]) for p in pts
    ]
    effect = svg.line_band(
        days,
        {"HitRate diff": hr, "like-rate diff": lr},
        f"{arm} − control, cumulative to each day (95% CI)",
        percent=False,
        width=540,
    )
    return Markup(effect)


def _sequential_plot(seq: dict | None) -> Markup:
    if not seq:
        return Markup("")
    z = [(v, v, v) for v in seq["z"]]
    return Markup(
        svg.line_band(
            seq["days"],
            {"HitRate z": z},
            "Sequential test: z vs O'Brien-Fleming boundary",
            percent=False,
            width=540,
            dashed={"+boundary": seq["boundaries"], "−boundary": [-b for b in seq["boundaries"]]},
        )
    )


def render_html(report: dict) -> str:
    """The report as one HTML string (no external resources)."""
    r = clean(report)
    for phase in r["phases"]:
        for comp in phase["comparisons"]:
            comp["plots"] = [_metric_plot(m) for m in comp["metrics"]]
            comp["cumulative_plot"] = _cumulative(phase["daily"], comp["arm"])
            comp["sequential_plot"] = _sequential_plot(comp.get("sequential"))
    env = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"])
    )
    env.globals.update(fmt_p=fmt_p, fmt_v=fmt_v, fmt_pct=fmt_pct, fmt_pct0=fmt_pct0, fmt_ms=fmt_ms)
    return env.get_template("report.html.j2").render(r=r)
