"""The analysis' decisions at full simulation size (the tests run smaller versions):

1. CUPED's false-positive rate in phase 2 of a two-phase experiment whose phase 1 had a +30%
   effect, with the covariate from the window before phase 2 (the old rule) and from before
   the experiment's first exposure (the rule now).
2. The verdict's power at the size `feedlab analyze --plan` gives for 80%, and its A/A
   false-positive rate.
3. "CI excludes 0" against "p < alpha" over random small-n cases, per test.
4. The anytime-valid confidence sequence over 50 looks: A/A false-positive rate; with a +5%
   lift, how often and after how many users it rejects, against the fixed-horizon size.

    .venv/bin/python benchmarks/analysis_decisions.py [--scale 1.0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.simulations import (
    anytime_looks,
    ci_agreement,
    two_phase_cuped_fpr,
    verdict_power,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every run count")
    args = ap.parse_args()

    def n(runs: int) -> int:
        return max(int(runs * args.scale), 10)

    table = Table(title="feedlab analyze: simulated decisions (α = 0.05)")
    for col in ("check", "runs", "result", "target", "seconds"):
        table.add_column(col, justify="left" if col in ("check", "target") else "right")

    def row(check: str, runs: int, result: str, target: str, t0: float) -> None:
        table.add_row(check, f"{runs:,}", result, target, f"{time.perf_counter() - t0:.1f}")

    t = time.perf_counter()
    old = two_phase_cuped_fpr(n(1_000), 300, 1, "phase1")
    row("CUPED FPR, phase 2, covariate from before phase 2 (old)", n(1_000), f"{old:.3f}", "—", t)
    t = time.perf_counter()
    new = two_phase_cuped_fpr(n(5_000), 300, 2, "pre")
    row(
        "CUPED FPR, phase 2, covariate before the first exposure",
        n(5_000),
        f"{new:.3f}",
        "[0.035, 0.065]",
        t,
    )
    t = time.perf_counter()
    vp = verdict_power(n(10_000), 3)
    row(
        f"verdict power at the planned {vp.planned_users_per_arm:,} users/arm",
        n(10_000),
        f"{vp.power:.3f}",
        "0.80 ± 0.04",
        t,
    )
    row(
        "verdict A/A false-positive rate",
        n(10_000),
        f"{vp.aa_false_positive_rate:.3f}",
        "[0.035, 0.065]",
        t,
    )
    for kind in ("welch", "ztest", "ratio"):
        t = time.perf_counter()
        ag = ci_agreement(n(10_000), 4, kind)
        row(
            f"{kind}: CI excludes 0 vs p < α (diff / lift disagreements)",
            ag.cases,
            f"{ag.diff_disagreements} / {ag.lift_disagreements} ({ag.rejections} rejections)",
            "0 / 0",
            t,
        )
    t = time.perf_counter()
    aa = anytime_looks(n(2_000), 50, 5, 0.0)
    row(
        "anytime CS, A/A, 50 looks to 4x the fixed horizon",
        aa.runs,
        f"{aa.rejection_rate:.3f}",
        "≤ 0.055",
        t,
    )
    t = time.perf_counter()
    ab = anytime_looks(n(1_000), 50, 6, 0.05)
    ratio = (ab.median_users_to_rejection or float("nan")) / ab.fixed_horizon_users
    row("anytime CS, +5% lift: share rejected", ab.runs, f"{ab.rejection_rate:.3f}", "→ 1", t)
    row(
        "  median users to rejection / fixed-horizon users",
        ab.runs,
        f"{ab.median_users_to_rejection:,.0f} / {ab.fixed_horizon_users:,} = {ratio:.2f}",
        "—",
        t,
    )
    Console().print(table)


if __name__ == "__main__":
    main()
