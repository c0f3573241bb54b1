"""Comparing analysis reports: the JSON view without what differs between runs."""

from __future__ import annotations

import pytest
from feedlab.analysis.online.results import Report
from feedlab.analysis.report.serialize import clean


def comparable(report: Report) -> dict:
    """The report's JSON view without its generation time and step timings."""
    data = clean(report)
    data.pop("generated_at")
    for phase in data["phases"]:
        phase.pop("timings_s")
    return data


def assert_close(x: object, y: object, path: str = "report") -> None:
    """Equal structure; floats equal to 1e-9 relative (NaN equal to NaN)."""
    if isinstance(x, dict):
        assert isinstance(y, dict) and set(x) == set(y), path
        for k in x:
            assert_close(x[k], y[k], f"{path}.{k}")
    elif isinstance(x, list):
        assert isinstance(y, list) and len(x) == len(y), path
        for i, (u, v) in enumerate(zip(x, y, strict=True)):
            assert_close(u, v, f"{path}[{i}]")
    elif isinstance(x, float):
        assert x == pytest.approx(y, rel=1e-9, abs=1e-12, nan_ok=True), path
    else:
        assert x == y, path
