"""JSON for machines: NaN/inf become null so the output is strict JSON."""

from __future__ import annotations

import json
import math
from typing import Any


def clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def to_json(report: dict) -> str:
    return json.dumps(clean(report), indent=2, allow_nan=False, default=str)
