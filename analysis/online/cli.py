"""`feedlab analyze`: online experiment analysis and experiment planning."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from feedlab.storage.clock import naive_utc

if TYPE_CHECKING:
    from feedlab.analysis.online.results import Report

FORMATS = ("table", "json", "html")


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze_command)


def parse_duration(text: str, option: str = "--window") -> float:
    """'1h', '30m', '90s', '2d' -> seconds. The unit is required: a bare '5' could mean
    seconds, minutes or hours, and a wrong guess silently changes every metric."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text or "")
    if not m or float(m.group(1)) <= 0:
        raise typer.BadParameter(
            f"{option}: a positive duration with its unit s, m, h or d (e.g. 30m, 1h), got {text!r}"
        )
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _when(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{name}: not an ISO datetime: {value!r}") from exc
    return naive_utc(ts)


def analyze_command(
    experiment: str = typer.Argument(None, help="Experiment name (omit with --plan)."),
    phase: str = typer.Option(None, "--phase", help="Analyse only this config_version."),
    window: str = typer.Option(
        "1h",
        "--window",
        help="Attribution window: a like counts for an exposure if it comes within this "
        "time after it. A duration with its unit: 90s, 30m, 1h, 2d.",
    ),
    fmt: str = typer.Option("table", "--format", help="table | json | html"),
    out: Path = typer.Option(None, "--out", help="Write the report here (default: stdout)."),
    url: str = typer.Option(None, "--url", help="Database URL (default $FEEDLAB_DATABASE_URL)."),
    alpha: float = typer.Option(0.05, "--alpha", min=1e-6, max=0.5),
    bootstrap: int = typer.Option(
        1000, "--bootstrap", min=50, help="Poisson bootstrap replicates."
    ),
    planned_days: int = typer.Option(
        None, "--planned-days", min=1, help="Planned duration (sequential test horizon)."
    ),
    since: str = typer.Option(
        None, "--from", "--since", help="Only exposures at or after (ISO, UTC)."
    ),
    until: str = typer.Option(None, "--to", "--until", help="Only exposures before (ISO, UTC)."),
    pool: bool = typer.Option(
        False, "--pool", help="Pool phases (refused unless their splits are identical)."
    ),
    cuped: bool = typer.Option(True, "--cuped/--no-cuped", help="CUPED with pre-period."),
    correction: str = typer.Option(
        "holm", "--correction", help="Secondary metrics: holm | bh (Benjamini-Hochberg)."
    ),
    cap: float = typer.Option(
        None, "--cap", min=0.5, max=1.0, help="Winsorize per-user metrics at this quantile."
    ),
    new_users_only: bool = typer.Option(
        False, "--new-users-only", help="Leave out users carried over from an earlier split."
    ),
    anytime: bool = typer.Option(
        False, "--anytime", help="Decide on an anytime-valid confidence sequence."
    ),
    plan: bool = typer.Option(False, "--plan", help="Plan an experiment instead of analysing."),
    baseline: float = typer.Option(None, "--baseline", help="--plan: baseline rate or mean."),
    mde: float = typer.Option(
        0.05, "--mde", help="--plan: relative lift to detect (0.05 = +5% of the baseline)."
    ),
    power: float = typer.Option(0.8, "--power", help="--plan: wanted power."),
    sd: float = typer.Option(None, "--sd", help="--plan: sd of a mean metric (omit: rate)."),
    test_share: float = typer.Option(0.5, "--test-share", help="--plan: share in test arm."),
    daily_users: float = typer.Option(None, "--daily-users", help="--plan: users per day."),
    users: int = typer.Option(None, "--users", help="--plan: users available -> MDE."),
    design: str = typer.Option("ab", "--design", help="--plan: ab | interleaving."),
    pilot: str = typer.Option(
        None, "--pilot", help="--plan --design interleaving: experiment whose per-user Δ to use."
    ),
    delta: float = typer.Option(
        None, "--delta", help="--plan --design interleaving: Δ likes/user to detect."
    ),
) -> None:
    """Analyse an experiment per phase (table, JSON or HTML), or plan one with --plan."""
    if fmt not in FORMATS:
        raise typer.BadParameter(f"--format: one of {', '.join(FORMATS)}, got {fmt!r}")
    if design not in ("ab", "interleaving"):
        raise typer.BadParameter(f"--design: ab or interleaving, got {design!r}")
    if plan and design == "interleaving":
        from feedlab.analysis.online.interleaving import plan_interleaving

        try:
            planned = plan_interleaving(url, pilot, sd, delta, alpha, power, daily_users)
        except (LookupError, ValueError) as exc:
            raise typer.BadParameter(str(exc)) from exc
        _emit_mapping(planned, fmt, out)
        return
    if plan:
        _plan(baseline, mde, alpha, power, sd, test_share, daily_users, users, fmt, out)
        return
    if not experiment:
        raise typer.BadParameter("EXPERIMENT is required (or use --plan)")
    from feedlab.analysis.online.analyze import Options, PoolingRefused, analyze
    from feedlab.analysis.online.interleaving import analyze_interleaving, is_interleaving
    from feedlab.analysis.stats.multiple import CORRECTIONS
    from feedlab.storage.engine import make_engine

    from feedlab.settings import database_url

    if correction not in CORRECTIONS:
        raise typer.BadParameter(f"--correction: one of {', '.join(CORRECTIONS)}")
    options = Options(
        window_s=parse_duration(window),
        alpha=alpha,
        n_boot=bootstrap,
        cuped=cuped,
        planned_days=planned_days,
        since=_when(since, "--from"),
        until=_when(until, "--to"),
        correction=correction,
        cap=cap,
        new_users_only=new_users_only,
        anytime=anytime,
    )
    engine = make_engine(database_url(url))
    try:
        report: Report | dict[str, Any]
        if is_interleaving(engine, experiment):
            report = analyze_interleaving(
                engine, experiment, phase, window_s=options.window_s, alpha=alpha, n_boot=bootstrap
            )
        else:
            report = analyze(engine, experiment, phase, options, pool=pool)
    except (LookupError, PoolingRefused, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    finally:
        engine.dispose()
    _emit(report, fmt, out)


def _emit(report: Report | dict[str, Any], fmt: str, out: Path | None) -> None:
    """A/B reports are typed; interleaving reports are mappings with design "interleaving"."""
    if fmt == "table":
        from rich.console import Console

        console = Console(file=out.open("w", encoding="utf-8"), width=160) if out else None
        if isinstance(report, dict):
            from feedlab.analysis.report.interleaving import print_interleaving

            print_interleaving(report, console)
        else:
            from feedlab.analysis.report.table import print_report

            print_report(report, console)
        if console is not None:
            console.file.close()
        return
    if fmt == "json":
        from feedlab.analysis.report.serialize import to_json

        text = to_json(report)
    elif isinstance(report, dict):
        from feedlab.analysis.report.interleaving import render_interleaving_html

        text = render_interleaving_html(report)
    else:
        from feedlab.analysis.report.html import render_html

        text = render_html(report)
    _write(text, out)


def _write(text: str, out: Path | None) -> None:
    if out:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out}", err=True)
    else:
        typer.echo(text)


def _emit_mapping(plan: dict[str, Any], fmt: str, out: Path | None) -> None:
    """A plan given as a mapping (the interleaving design's) as a table or JSON."""
    if fmt == "table":
        from feedlab.analysis.report.table import print_mapping

        print_mapping("experiment plan", plan)
        return
    from feedlab.analysis.report.serialize import to_json

    _write(to_json(plan), out)


def _plan(baseline, mde, alpha, power, sd, test_share, daily_users, users, fmt, out) -> None:
    from feedlab.analysis.stats.power import minimum_detectable_effect, plan_sample_size

    if baseline is None:
        raise typer.BadParameter("--baseline is required with --plan")
    try:
        p = plan_sample_size(baseline, mde, alpha, power, test_share, sd, daily_users)
        detectable = (
            minimum_detectable_effect(
                baseline, users * (1 - test_share), users * test_share, alpha, power, sd
            )
            if users
            else None
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if fmt == "table":
        from feedlab.analysis.report.table import print_plan

        print_plan(p, detectable)
        return
    from feedlab.analysis.report.serialize import clean

    result = clean(p) | {"mde_at_users": detectable, "users": users, "mde_is": "relative lift"}
    _write(json.dumps(result, indent=2), out)
