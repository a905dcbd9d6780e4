"""``python -m bench.chaos``, short: two nodes, a few kills and a PostgreSQL
crash under senders and receivers; nothing acknowledged may be lost or
stored twice, and every receiver must get every message once, in order.
The full-size run is in docs/operations.md ("Chaos runs")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .support import ROOT


def test_short_chaos_run_loses_nothing(tmp_path: Path) -> None:
    report_path = tmp_path / "chaos.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.chaos", "--nodes", "2", "--kills", "3", "--pg-crashes", "1",
         "--duration", "15", "--dialogs", "4", "--settle", "20", "--json", str(report_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    report = json.loads(report_path.read_text())
    counts, faults = report["counts"], report["faults"]
    assert faults["kills"] == 3 and faults["pg_crashes"] == 1
    assert counts["acknowledged"] > 0
    assert counts["acknowledged_keyed"] > 0 and counts["acknowledged_without_key"] > 0
    for name in ("lost", "stored_twice", "stray", "event_log_missing", "events_missing", "events_duplicated",
                 "events_unexpected", "order_violations"):
        assert counts[name] == 0, (name, counts[name])
    assert counts["receivers_complete"] == counts["receivers"] > 0
    assert counts["stored"] >= counts["acknowledged"]
    assert "result: OK" in run.stdout
