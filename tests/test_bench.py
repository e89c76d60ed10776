"""The benchmark command runs end to end at a tiny size (issue 11; no timing assertions)."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from builders import PG_ADMIN_URL, pg_database

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.e2e  # generates and monitors four databases: minutes
def test_bench_prints_its_table_at_a_tiny_size(tmp_path):
    prefix = f"vbp_bench_test_{uuid.uuid4().hex[:10]}"
    env = {**os.environ, "VBP_BENCH_PG_URL": PG_ADMIN_URL,
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "plugins"), str(REPO_ROOT / "demo")])}
    try:
        proc = subprocess.run(
            [sys.executable, str(REPO_ROOT / "scripts" / "bench.py"), "--lines-per-month", "2000",
             "--institutions", "60", "--scales", "0.5", "--db", prefix],
            capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    finally:
        for suffix in ("", "_ingest", "_s05"):
            pg_database(prefix + suffix, drop=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = proc.stdout.strip().splitlines()
    assert "| step | the project (s) | the floor, same data, same run | ratio | peak RSS (MB) |" in lines
    for label in ("| ingest of one month's orders.csv", "| monitoring 2025-12 cold", "| monitoring 2025-12 warm",
                  "| monitoring cold at 0.5×", "| monitoring cold at 1×", "| parse vbp_monthly_monitoring.py"):
        assert any(line.startswith(label) for line in lines), label
    assert "| part | seconds | × GROUP BY |" in lines
    assert any(line.startswith("| PAYMENT_OVERDUE: ") for line in lines)
    assert any(line.startswith("| **warm: the sum** | ") for line in lines)
    assert lines[-1].startswith("RESULT: monitoring cold ")
    assert "the spec's floor " in lines[-1]
    assert "peak RSS" in lines[-1]
