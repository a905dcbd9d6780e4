"""The load harness (bench/load.py) still runs end to end: a tiny ``send`` and
``fanout`` against its own server, each must report throughput, no errors and
every push it expected.  Figures are not checked: this machine's are in
docs/performance.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.load", *args, "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def test_send_scenario_reports_throughput_and_pushes(tmp_path: Path) -> None:
    report = load(tmp_path, "send", "--duration", "2", "--users", "20", "--connections", "10")
    assert report["throughput_per_s"] > 0
    assert report["errors"] == 0
    assert report["requests"]["SendMessage"]["errors"] == {}
    assert report["requests"]["SendMessage"]["latency_ms"]["p99"] > 0
    assert report["server"]["cpu_s"] > 0 and report["server"]["rss_kib_after"] > 0
    assert report["pushes"]["expected"] > 0
    assert report["pushes"]["received"] == report["pushes"]["expected"]


def test_fanout_scenario_times_every_member(tmp_path: Path) -> None:
    report = load(tmp_path, "fanout", "--duration", "2", "--dialog-size", "10")
    assert report["throughput_per_s"] > 0
    assert report["errors"] == 0
    delivered = report["requests"]["push (each member)"]
    assert delivered["ok"] == report["requests"]["SendMessage"]["ok"] * 9
    assert report["requests"]["push (all members)"]["latency_ms"]["p99"] > 0
    assert report["pushes"]["received"] == report["pushes"]["expected"]


def test_fanout_with_offline_members_times_the_online_ones_and_counts_bytes(tmp_path: Path) -> None:
    report = load(tmp_path, "fanout", "--duration", "2", "--dialog-size", "40", "--online", "5")
    sent = report["requests"]["SendMessage"]["ok"]
    assert sent > 0 and report["errors"] == 0
    # Only the 4 online receivers are waited for; the offline 35 are not connected.
    assert report["requests"]["push (each member)"]["ok"] == sent * 4
    assert report["pushes"] == {**report["pushes"], "received": sent * 5, "expected": sent * 5}
    extra = report["extra"]
    assert (extra["members"], extra["online"]) == (40, 5)
    assert extra["server_cpu_us_per_online_recipient"] > 0
    # Every message is stored, so the database wrote something for each.
    assert extra["wal_bytes_per_message"] > 0 and extra["table_and_index_bytes_per_message"] >= 0


def test_open_loop_sends_on_schedule_and_times_from_the_schedule(tmp_path: Path) -> None:
    report = load(tmp_path, "send", "--duration", "2", "--users", "20", "--connections", "10", "--rate", "200")
    assert report["params"]["rate"] == 200
    assert report["extra"]["scheduled"] == 400  # 2 s at 200/s, whatever the answers did
    sent = report["requests"]["SendMessage"]
    assert sent["ok"] + sum(sent["errors"].values()) == 400
    assert 0 < sent["latency_ms"]["p50"] <= sent["latency_ms"]["p99"] <= sent["latency_ms"]["p99.9"]
