"""Multiple-comparison corrections: the secondary metrics of a report form one family, and the
decision metric of several treatment arms another."""

from __future__ import annotations

import numpy as np


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down; same as statsmodels multipletests 'holm')."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    scaled = np.minimum((m - np.arange(m)) * p[order], 1.0)
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted.tolist()


def benjamini_hochberg(p_values: list[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (step-up, false discovery rate; same as
    statsmodels multipletests 'fdr_bh')."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")[::-1]
    scaled = np.minimum(p[order] * m / (m - np.arange(m)), 1.0)
    adjusted = np.empty(m)
    adjusted[order] = np.minimum.accumulate(scaled)
    return adjusted.tolist()


CORRECTIONS = {"holm": holm, "bh": benjamini_hochberg}
"""Corrections by the name `feedlab analyze --correction` takes."""


def adjust_families(
    decision: list[float], secondary: list[float], method: str = "holm"
) -> tuple[list[float], list[float]]:
    """The decision metric's p-values (one per treatment arm) are corrected only among
    themselves, so with one treatment arm the decision is tested at full alpha; the secondary
    metrics form their own family. What `--plan` promises is what the verdict delivers."""
    correct = CORRECTIONS[method]
    return correct(decision), correct(secondary)
