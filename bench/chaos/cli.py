"""The command line of ``python -m bench.chaos``: options, the table, the JSON, the exit code.

    python -m bench.chaos                                   # 60 s, 2 nodes, no faults
    python -m bench.chaos --kills 3 --pg-crashes 1 --duration 30
    python -m bench.chaos --nodes 2 --kills 50 --pg-crashes 3 --broker-restarts 3 --duration 150 --broker nats

Exit status: 0 when nothing acknowledged was lost or stored twice and every
receiver got every message once and in order; 1 otherwise; 2 when the run
itself could not be carried out (a process that would not start).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any

from . import audit
from .run import Run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.chaos",
                                description="Faults under load, then an audit of what survived.")
    p.add_argument("--nodes", type=int, default=2, help="server processes on the one database (default %(default)s)")
    p.add_argument("--broker", choices=["pg", "nats"], default="pg",
                   help="cross-node signals: PostgreSQL LISTEN/NOTIFY or a NATS server of the run's own")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of traffic; the faults fall in it")
    p.add_argument("--kills", type=int, default=0, help="SIGKILLs of a node, each restarted on its port")
    p.add_argument("--pg-crashes", type=int, default=0, help="immediate stops of PostgreSQL, each restarted")
    p.add_argument("--broker-restarts", type=int, default=0,
                   help="NATS: kill and restart nats-server; pg: terminate every node's LISTEN connection")
    p.add_argument("--dialogs", type=int, default=8, help="dialogs (default %(default)s)")
    p.add_argument("--senders", type=int, default=3, help="senders per dialog, every other one with msgkey")
    p.add_argument("--receivers", type=int, default=2, help="subscribed receivers per dialog")
    p.add_argument("--pause", type=float, default=0.02, help="mean seconds a sender waits between messages")
    p.add_argument("--settle", type=float, default=30.0,
                   help="seconds receivers get to catch up after the traffic (default %(default)s)")
    p.add_argument("--seed", type=int, default=None, help="random seed of the fault times and the pauses")
    p.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    p.add_argument("--keep", action="store_true", help="keep the run's directory (database, node logs)")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.nodes < 1 or args.dialogs < 1 or args.senders < 1 or args.receivers < 0 or args.duration <= 0:
        raise SystemExit("--nodes, --dialogs, --senders >= 1, --receivers >= 0, --duration > 0")
    if min(args.kills, args.pg_crashes, args.broker_restarts, args.settle, args.pause) < 0:
        raise SystemExit("counts and seconds cannot be negative")
    return args


ROWS = [
    ("requests sent", "requests"),
    ("acknowledged (200)", "acknowledged"),
    ("  with msgkey", "acknowledged_keyed"),
    ("  without key", "acknowledged_without_key"),
    ("stored", "stored"),
    ("lost (acknowledged, not stored)", "lost"),
    ("stored twice", "stored_twice"),
    ("unacknowledged but stored", "unacknowledged_stored"),
    ("  retried without key, both stored", "retried_without_key_stored_twice"),
    ("stored, never sent", "stray"),
    ("event log: missing", "event_log_missing"),
    ("event log: duplicated", "event_log_duplicated"),
    ("retries / reconnects", None),
    ("refused (other than 503)", "refused"),
    ("receivers complete", None),
    ("events received", "events_received"),
    ("events missing", "events_missing"),
    ("events duplicated", "events_duplicated"),
    ("events never stored", "events_unexpected"),
    ("order violations", "order_violations"),
    ("errors out of client.events()", "stream_errors"),
]


def table(report: dict[str, Any]) -> str:
    p, f, c = report["params"], report["faults"], report["counts"]
    lines = [
        f"chaos: {p['nodes']} node(s), broker {p['broker']}, {report['seconds'].get('traffic_s', 0):.0f}s of traffic; "
        f"faults: {f['kills']} kills {f['kills_per_node']}, {f['pg_crashes']} PostgreSQL crashes, "
        f"{f['broker_restarts']} broker restarts",
    ]
    for label, key in ROWS:
        if key is None and label.startswith("retries"):
            value: Any = f"{c['retries']} / {c['reconnects']}"
        elif key is None:
            value = f"{c['receivers_complete']}/{c['receivers']}"
        else:
            value = c[key]
            if isinstance(value, dict):
                value = ", ".join(f"{k}: {v}" for k, v in sorted(value.items())) or 0
        lines.append(f"  {label:<38} {value}")
    problems = audit.failures(c)
    lines.append("result: " + ("OK" if not problems else "FAILED (" + "; ".join(problems) + ")"))
    return "\n".join(lines)


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    task = asyncio.current_task()
    assert task is not None
    # SIGTERM ends the run like Ctrl-C: the processes it started are stopped first.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await Run(args).main()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = asyncio.run(_main(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; everything the run started is stopped", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"the run could not be carried out: {exc}", file=sys.stderr)
        return 2
    problems = audit.failures(report["counts"])
    report["ok"] = not problems
    report["failures"] = problems
    print(table(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2, default=str)
            f.write("\n")
    return 0 if not problems else 1
