"""Figures of a load run: latency recorders, process CPU and memory from
/proc, the machine's description, py-spy profile summaries, and the printed
and JSON report.

Nothing here talks to the server; ``bench.load`` feeds it.
"""

from __future__ import annotations

import json
import os
import platform
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- latency and errors -----------------------------------------------------------------


@dataclass
class Recorder:
    """Latencies (seconds) of successful requests and failures by Status code
    (or ``timeout`` / ``closed`` for transport failures) of one request kind."""

    name: str
    latencies: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def total(self) -> int:
        return len(self.latencies) + sum(self.errors.values())

    def summary(self, seconds: float) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "errors": dict(sorted(self.errors.items())),
            "throughput_per_s": round(self.ok / seconds, 1) if seconds > 0 else 0.0,
            "latency_ms": latency_ms(self.latencies),
        }


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[rank]


def latency_ms(values: list[float]) -> dict[str, float]:
    data = sorted(values)
    if not data:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "p99.9": 0.0, "max": 0.0, "mean": 0.0}
    return {
        "p50": round(percentile(data, 50) * 1000, 3),
        "p95": round(percentile(data, 95) * 1000, 3),
        "p99": round(percentile(data, 99) * 1000, 3),
        "p99.9": round(percentile(data, 99.9) * 1000, 3),
        "max": round(data[-1] * 1000, 3),
        "mean": round(sum(data) / len(data) * 1000, 3),
    }


# -- processes ---------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0 if it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is state (field 3 of stat); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def kernel_cpu_seconds(pid: int) -> float:
    """System (kernel) CPU seconds a process has used so far: its socket
    writes, reads and polling (0 if it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    return int(text[text.rindex(")") + 2 :].split()[12]) / CLOCK_TICKS


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (the backends of a postmaster)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
            out.append(int(entry))
    return out


def tree_cpu_seconds(root: int) -> float:
    """CPU of a process and its living children (PostgreSQL: postmaster and
    backends; exited backends are not counted, the pool keeps them alive)."""
    return cpu_seconds(root) + sum(cpu_seconds(p) for p in children(root))


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kib / (1 << 20), 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_at_start": list(os.getloadavg()),
    }


# -- profiles ----------------------------------------------------------------------------

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def summarize_collapsed(path: Path | str, top: int = 25) -> dict[str, list[tuple[str, float]]]:
    """Summarise py-spy's ``--format raw`` output (collapsed stacks, one
    ``frame;frame;... count`` per line): the functions where samples end
    (self time) and the functions on the stack (inclusive time), as shares
    of all samples.  Line numbers are folded so a function is one entry."""
    own: Counter = Counter()
    inclusive: Counter = Counter()
    total = 0
    for line in Path(path).read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        names = [_short(f) for f in stack.split(";") if f]
        if not names:
            continue
        own[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
    if not total:
        return {"self": [], "inclusive": [], "samples": []}  # type: ignore[dict-item]
    return {
        "samples": [("all", float(total))],
        "self": [(n, round(100 * c / total, 1)) for n, c in own.most_common(top)],
        "inclusive": [(n, round(100 * c / total, 1)) for n, c in inclusive.most_common(top)],
    }


def _short(frame: str) -> str:
    """``func (path/to/file.py:12)`` -> ``func (file.py)``; the site-packages
    or project prefix is dropped to keep lines readable."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    file = match.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{match.group('func')} ({file})"


# -- output ------------------------------------------------------------------------------


def render(report: dict[str, Any]) -> str:
    """The human-readable report."""
    lines = []
    p = report["params"]
    load = (f"open loop at {p['rate']:g} requests/s scheduled" if p.get("rate")
            else f"inflight {p['inflight']}")
    lines.append(
        f"scenario {report['scenario']}: {p['users']} users on {p['connections']} connections,"
        f" {load}, {report['seconds']:.1f} s measured, codec {p['codec']},"
        f" durable {p['durable'] if p['durable'] is not None else '(target server)'}"
    )
    for name, rec in report["requests"].items():
        lat = rec["latency_ms"]
        errors = ", ".join(f"{k}: {v}" for k, v in rec["errors"].items()) or "none"
        lines.append(
            f"  {name:<14} {rec['ok']:>9} ok  {rec['throughput_per_s']:>10.1f}/s"
            f"  p50 {lat['p50']:.2f}  p95 {lat['p95']:.2f}  p99 {lat['p99']:.2f}  p99.9 {lat.get('p99.9', 0):.2f}"
            f"  max {lat['max']:.2f} ms"
            f"  errors: {errors}"
        )
    s = report["server"]
    if s.get("pid"):
        lines.append(
            f"  server pid {s['pid']}" + (f" ({s['workers']} workers)" if s.get("workers", 1) > 1 else "")
            + f": {s['cpu_s']:.2f} CPU s"
            f" = {s['cpu_us_per_request']:.1f} us per request ({s.get('kernel_share', 0):.0%} in the kernel);"
            f" RSS {s['rss_kib_before']} -> {s['rss_kib_after']} KiB"
        )
    d = report.get("database") or {}
    if d.get("cpu_s") is not None:
        lines.append(f"  PostgreSQL: {d['cpu_s']:.2f} CPU s = {d['cpu_us_per_request']:.1f} us per request")
    c = report["client"]
    lines.append(f"  load generator: {c['cpu_s']:.2f} CPU s ({c['cpu_share']:.0%} of one core)")
    pushes = report.get("pushes")
    if pushes:
        lines.append(
            f"  pushes: {pushes['received']} received ({pushes['per_s']:.1f}/s)"
            + (f", {pushes['expected']} expected" if pushes.get("expected") is not None else "")
        )
    for key, value in (report.get("extra") or {}).items():
        lines.append(f"  {key}: {json.dumps(value, ensure_ascii=False)}")
    lines.append(f"  setup {report['setup_seconds']:.1f} s; machine: {report['machine']['nproc']} x "
                 f"{report['machine']['cpu_model']}, {report['machine']['memory_gib']} GiB, "
                 f"load average at start {report['machine']['loadavg_at_start'][0]:.2f}")
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: Path | str) -> None:
    Path(path).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
