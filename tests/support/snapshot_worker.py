"""One gateway worker's start on the shared snapshot, in its own process (`python -m
tests.support.snapshot_worker URL FOLDER` prints JSON): the snapshot it maps, whether its event
arrays are mapped from that folder's files (/proc/self/maps), and its point-in-time answers."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from pathlib import Path

from feedlab.gateway.snapshot import StartData

LATE = datetime(2024, 3, 1)


def answers(data: StartData) -> dict:
    """Point-in-time answers of a start (users 1-11, early and late), as JSON values."""
    h = data.history
    out: dict = {"events": len(h), "through_id": data.through_id}
    for at in (datetime(2024, 1, 3), LATE + timedelta(days=1)):
        out[str(at)] = {
            "liked": {u: h.liked_before(u, at).tolist() for u in range(1, 12)},
            "counts": [c.tolist() for c in h.post_counts(at, post_ids=list(range(1, 31)))],
        }
    return json.loads(json.dumps(out))


def main(url: str, folder: str) -> None:
    from feedlab.storage.engine import make_engine

    data = StartData.from_database(make_engine(url), Path(folder))
    maps = Path("/proc/self/maps").read_text()
    files = ("ts", "u", "p", "by_user")
    report = {
        "version": data.version,
        "mapped": all(f"{data.version}/{name}.npy" in maps for name in files),
        "answers": answers(data),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:3])
