"""Tiny inline-SVG charts (no plotting library, no network): a CI forest plot and a line
chart with a band. Output is a string to embed in the HTML report."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

INK = "#1f2937"
GRID = "#e5e7eb"
GOOD = "#15803d"
BAD = "#b91c1c"
NEUTRAL = "#2563eb"


def _finite(*xs: float) -> bool:
    return all(math.isfinite(x) for x in xs)


def _finite_rows(
    rows: Sequence[tuple[str, float | None, float | None, float | None]],
) -> list[tuple[str, float, float, float]]:
    """The rows whose estimate and bounds all exist and are finite."""
    out = []
    for label, est, low, high in rows:
        if est is not None and low is not None and high is not None and _finite(est, low, high):
            out.append((label, est, low, high))
    return out


def _nice_range(lo: float, hi: float) -> tuple[float, float]:
    if lo == hi:
        lo, hi = lo - 1, hi + 1
    pad = (hi - lo) * 0.08
    return lo - pad, hi + pad


def forest(
    rows: Sequence[tuple[str, float | None, float | None, float | None]],
    title: str,
    percent: bool = True,
    width: int = 720,
) -> str:
    """One horizontal CI bar per row: (label, estimate, low, high); a zero line for reference."""
    rows = _finite_rows(rows)
    row_h, left, right, top = 34, 130, 150, 34
    height = top + row_h * max(len(rows), 1) + 30
    if not rows:
        return _empty(title, width)
    lo, hi = _nice_range(min(0.0, *(r[2] for r in rows)), max(0.0, *(r[3] for r in rows)))

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * (width - left - right)

    fmt = (lambda v: f"{v:+.1%}") if percent else (lambda v: f"{v:+.4g}")
    parts = [_head(width, height, title)]
    parts.append(
        f'<line x1="{x(0):.1f}" y1="{top - 6}" x2="{x(0):.1f}" y2="{height - 24}" '
        f'stroke="{INK}" stroke-dasharray="4 3"/>'
    )
    for i, (label, est, low, high) in enumerate(rows):
        y = top + row_h * i + row_h / 2
        color = GOOD if low > 0 else BAD if high < 0 else NEUTRAL
        parts.append(
            f'<text x="8" y="{y + 4:.1f}" font-size="12" fill="{INK}">{escape(label)}</text>'
            f'<line x1="{x(low):.1f}" y1="{y:.1f}" x2="{x(high):.1f}" y2="{y:.1f}" '
            f'stroke="{color}" stroke-width="3"/>'
            f'<circle cx="{x(est):.1f}" cy="{y:.1f}" r="5" fill="{color}"/>'
            f'<text x="{x(high) + 6:.1f}" y="{y - 6:.1f}" font-size="10" fill="{INK}">'
            f"{escape(fmt(est))} [{escape(fmt(low))}, {escape(fmt(high))}]</text>"
        )
    ticks = [lo, hi] + ([0.0] if min(x(0) - x(lo), x(hi) - x(0)) > 40 else [])
    for v in ticks:
        parts.append(
            f'<text x="{x(v):.1f}" y="{height - 8}" font-size="10" text-anchor="middle" '
            f'fill="{INK}">{escape(fmt(v))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def line_band(
    labels: Sequence[str],
    series: dict[str, Sequence[tuple[float, float, float]]],
    title: str,
    percent: bool = True,
    width: int = 720,
    height: int = 260,
    dashed: dict[str, Sequence[float]] | None = None,
) -> str:
    """Lines over x = labels, each with a shaded (low, high) band; `dashed` adds plain dashed
    lines (e.g. sequential boundaries)."""
    left, right, top, bottom = 60, 40, 34, 40
    pts = [v for s in series.values() for t in s for v in t if _finite(v)]
    pts += [v for s in (dashed or {}).values() for v in s if _finite(v)]
    if not labels or not pts:
        return _empty(title, width)
    lo, hi = _nice_range(min(0.0, *pts), max(0.0, *pts))
    n = len(labels)

    def x(i: int) -> float:
        return left + (i / max(n - 1, 1)) * (width - left - right)

    def y(v: float) -> float:
        return top + (hi - v) / (hi - lo) * (height - top - bottom)

    fmt = (lambda v: f"{v:+.1%}") if percent else (lambda v: f"{v:+.2f}")
    palette = [NEUTRAL, "#9333ea", "#ea580c", "#0d9488"]
    parts = [_head(width, height, title)]
    for v in (lo, 0.0, hi):
        parts.append(
            f'<line x1="{left}" y1="{y(v):.1f}" x2="{width - right}" y2="{y(v):.1f}" '
            f'stroke="{INK if v == 0 else GRID}"/>'
            f'<text x="{left - 4}" y="{y(v) + 4:.1f}" font-size="10" text-anchor="end" '
            f'fill="{INK}">{escape(fmt(v))}</text>'
        )
    for k, (name, values) in enumerate(series.items()):
        color = palette[k % len(palette)]
        ok = [(i, t) for i, t in enumerate(values) if _finite(*t)]
        if not ok:
            continue
        band = [f"{x(i):.1f},{y(t[2]):.1f}" for i, t in ok]
        band += [f"{x(i):.1f},{y(t[1]):.1f}" for i, t in reversed(ok)]
        parts.append(f'<polygon points="{" ".join(band)}" fill="{color}" fill-opacity="0.15"/>')
        line = " ".join(f"{x(i):.1f},{y(t[0]):.1f}" for i, t in ok)
        parts.append(f'<polyline points="{line}" fill="none" stroke="{color}" stroke-width="2"/>')
        parts.extend(
            f'<circle cx="{x(i):.1f}" cy="{y(t[0]):.1f}" r="3" fill="{color}"/>' for i, t in ok
        )
        parts.append(
            f'<text x="{left + 8 + 160 * k}" y="{top - 8}" font-size="11" fill="{color}">'
            f"● {escape(name)}</text>"
        )
    for name, line_values in (dashed or {}).items():
        points = [(i, v) for i, v in enumerate(line_values) if _finite(v)]
        line = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in points)
        parts.append(
            f'<polyline points="{line}" fill="none" stroke="{BAD}" stroke-dasharray="5 4"/>'
        )
        if points:
            i, v = points[-1]
            parts.append(
                f'<text x="{x(i) - 4:.1f}" y="{y(v) - 6:.1f}" font-size="10" '
                f'text-anchor="end" fill="{BAD}">{escape(name)}</text>'
            )
    step = max(1, math.ceil(n / 4))
    for i in [*(i for i in range(0, n - 1, step) if i <= n - 1 - step), n - 1]:
        anchor = "end" if i == n - 1 and n > 1 else "middle"
        parts.append(
            f'<text x="{x(i):.1f}" y="{height - 14}" font-size="10" text-anchor="{anchor}" '
            f'fill="{INK}">{escape(labels[i])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _head(width: int, height: int, title: str) -> str:
    return (
        f'<svg width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        f'font-family="system-ui, sans-serif">'
        f'<text x="8" y="18" font-size="13" font-weight="600" fill="{INK}">{escape(title)}</text>'
    )


def _empty(title: str, width: int) -> str:
    return (
        _head(width, 60, title)
        + f'<text x="8" y="44" font-size="12" fill="{INK}">no data yet</text></svg>'
    )
