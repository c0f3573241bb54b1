"""`benchmarks/scale.py` (serve and train at growing world sizes): its pieces, and its whole
path at a tiny size so the script cannot rot (the real sizes are run by hand)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "scale.py"
spec = importlib.util.spec_from_file_location("scale_benchmark", SCRIPT)
assert spec is not None and spec.loader is not None
scale = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = scale  # dataclasses look their module up there
spec.loader.exec_module(scale)


def test_sizes_read_as_event_counts_and_give_users_up_to_the_real_network():
    assert [scale.parse_size(s) for s in ("0.5M", "20k", "77_000_000")] == [
        500_000,
        20_000,
        77_000_000,
    ]
    with pytest.raises(SystemExit, match="--sizes"):
        scale.parse_size("lots")
    assert scale.world_users(500_000, 133) == round(500_000 / (3.55 * 133))
    assert scale.world_users(10**10, 133) == scale.REAL_USERS


def test_a_childs_peak_memory_and_cpu_come_from_the_kernel(tmp_path):
    grab = "x = bytearray(300 * 2**20); sum(range(3_000_000))"
    run = scale.run_measured([sys.executable, "-c", grab], dict(os.environ), tmp_path / "log")
    assert run.peak_mb >= 300
    assert run.cpu_s > 0 and run.wall_s >= run.cpu_s * 0.5
    with pytest.raises(RuntimeError, match="failed"):
        scale.run_measured([sys.executable, "-c", "raise SystemExit(3)"], {}, tmp_path / "log")


def test_own_memory_reads_from_proc():
    pid = os.getpid()
    assert scale.proc_kb(pid, "smaps_rollup", "Pss") > 0
    assert scale.proc_kb(pid, "status", "VmHWM") >= scale.proc_kb(pid, "status", "VmRSS")


def test_table_has_a_column_per_size_and_na_for_what_was_not_measured():
    columns = [scale.Column("1M", {"events (users)": "1.00M (3)"}), scale.Column("2M")]
    lines = scale.table(columns).splitlines()
    assert [c.strip() for c in lines[0].split(" | ")[1:]] == ["1M", "2M"]
    events = next(line for line in lines if line.startswith("events (users)"))
    assert [c.strip() for c in events.split(" | ")[1:]] == ["1.00M (3)", "n/a"]
    assert len(lines) == 2 + len(scale.ROWS)


@pytest.mark.postgres
@pytest.mark.slow
def test_the_smallest_size_runs_end_to_end(tmp_path):
    report = scale.main(
        [
            *("--sizes", "20k", "--posts", "200", "--days", "30", "--iterations", "10"),
            *("--chunk-users", "80", "--workdir", str(tmp_path)),
        ]
    )
    rows = {
        line.split(" | ")[0].strip(): line.split(" | ")[1].strip()
        for line in report.splitlines()[2:-1]
    }
    snapshot = scale.has_command("snapshot", "build")
    for name in scale.ROWS:
        assert (rows[name] == "n/a") == (name == "snapshot build" and not snapshot), name
    assert rows["events (users)"].startswith(("0.01M", "0.02M", "0.03M"))
    assert int(rows["train control: rows"].replace(",", "")) > 0
