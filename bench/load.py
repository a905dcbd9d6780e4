"""End-to-end load test of the sessia server.

    python -m bench.load send                      # own server, 200 users, 10 s
    python -m bench.load send --users 1000 --connections 1000 --inflight 2
    python -m bench.load fanout --dialog-size 1000
    python -m bench.load history --json history.json
    python -m bench.load send --target 127.0.0.1:7788 --server-pid 1234 --database-url postgresql://...
    python -m bench.load media                     # files in parts and ranges (bench/media.py)

Scenarios: send, history, search, login, fanout, idle (see bench/scenarios.py
and docs/performance.md).  By default the harness starts its own server
(``python -m server --port 0 --allow-any-client``) with an embedded PostgreSQL
in a temporary directory, seeds it, runs the scenario for --duration seconds,
prints a report (throughput, latency percentiles, errors by Status code,
server CPU per request and RSS, pushes) and stops the server.  Traffic goes
to the loopback interface only; every loop ends at the deadline by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import resource
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from protocol.codecs import Codec

from . import report as rep
from .media import main as media_main
from .scenarios import SCENARIOS, ApiSetup, DirectSetup, Scenario
from .servers import OwnServer

ROOT = Path(__file__).resolve().parent.parent


# -- the server under test -----------------------------------------------------------------


class TargetServer:
    """A server someone else runs (--target); only on this machine's loopback."""

    def __init__(self, args: argparse.Namespace) -> None:
        host, _, port = args.target.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
            raise SystemExit(f"--target must be a loopback address (127.0.0.0/8, ::1), not {host}")
        self.host = "127.0.0.1" if host == "localhost" else host
        self.port = int(port)
        self.pid = args.server_pid
        self.database_url = args.database_url
        self.pg_pid = None
        self.log: list[str] = []

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


# -- the run -------------------------------------------------------------------------------


class Run:
    """What scenarios share: options, address, set-up and the deadline."""

    def __init__(self, args: argparse.Namespace, host: str, port: int, setup: Any) -> None:
        self.args = args
        self.host = host
        self.port = port
        self.setup = setup
        self.codec = Codec.JSON if args.codec == "json" else Codec.MSGPACK
        self.deadline = 0.0
        self.hold_started: float | None = None
        self.requests_ended: float | None = None


class Progress:
    """A bar redrawn in place on a terminal; a plain line every 2 s otherwise."""

    def __init__(self, scenario: Scenario, run: Run, started: float) -> None:
        self.scenario = scenario
        self.run = run
        self.started = started
        self.tty = sys.stderr.isatty()
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        interval = 0.25 if self.tty else 2.0
        last_ok, last_t = 0, time.perf_counter()
        while True:
            await asyncio.sleep(interval)
            now = time.perf_counter()
            ok = self.scenario.primary.ok if self.scenario.recorders else 0
            rate = (ok - last_ok) / max(now - last_t, 1e-9)
            last_ok, last_t = ok, now
            total = max(self.run.deadline - self.started, 1e-9)
            done = min(max(now - self.started, 0.0) / total, 1.0)
            text = f"{now - self.started:5.1f}/{total:.0f}s {self.scenario.status()}, {rate:,.0f}/s now"
            if self.tty:
                bar = "#" * int(done * 30)
                sys.stderr.write(f"\r[{bar:<30}] {text}\033[K")
            else:
                sys.stderr.write(f"[{done:4.0%}] {text}\n")
            sys.stderr.flush()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        if self.tty:
            sys.stderr.write("\n")


def system_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in parts[:8]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / rep.CLOCK_TICKS, sum(values) / rep.CLOCK_TICKS


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def server_processes(pid: int | None) -> list[int]:
    """The server's pid and, when it runs ``--workers``, its workers' (its
    children running ``python -m server worker``): their CPU and RSS are the
    server's figures."""
    if pid is None:
        return []
    workers = []
    for child in rep.children(pid):
        try:
            if Path(f"/proc/{child}/cmdline").read_bytes().endswith(b"server\0worker\0"):
                workers.append(child)
        except OSError:
            continue
    return [pid, *workers]


def snapshot(server: Any) -> dict[str, float]:
    busy, total = system_cpu()
    pids = server_processes(server.pid)
    return {
        "server_cpu": sum(rep.cpu_seconds(pid) for pid in pids),
        "server_kernel_cpu": sum(rep.kernel_cpu_seconds(pid) for pid in pids),
        "server_rss": sum(rep.rss_kib(pid) for pid in pids),
        "pg_cpu": rep.tree_cpu_seconds(server.pg_pid) if server.pg_pid else 0.0,
        "client_cpu": client_cpu(),
        "busy": busy,
        "total": total,
    }


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def parse_sizes(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    sizes = (int(lo), int(hi or lo))
    if sizes[0] < 2 or sizes[1] < sizes[0]:
        raise argparse.ArgumentTypeError("a dialog size is N or LO-HI with 2 <= LO <= HI")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--users", type=int, help="accounts (default depends on the scenario)")
    p.add_argument("--connections", type=int, help="connections, one device session each")
    p.add_argument("--duration", type=float, default=10.0, help="seconds measured (default %(default)s)")
    p.add_argument("--inflight", type=int, help="requests in flight per connection (fanout: messages at a time)")
    p.add_argument("--dialog-size", help="members per dialog: N or LO-HI (send/history: 2-10, fanout: 100)")
    p.add_argument("--rate", type=float, help="send/history: open loop, this many requests per second in all,"
                   " started on schedule whatever the answers do; latency counted from the scheduled start")
    p.add_argument("--online", type=int, help="fanout: members connected and subscribed (default: all); the rest"
                   " are offline, their pushes wait in the log")
    p.add_argument("--codec", choices=["msgpack", "json"], default="msgpack")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds one request (or one push) may take")
    p.add_argument("--target", help="HOST:PORT of a running server on this machine instead of starting one")
    p.add_argument("--server-pid", type=int, help="with --target: its pid, for CPU and RSS figures")
    p.add_argument("--database-url", help="with --target: its database, for fast direct set-up")
    p.add_argument("--no-durable", dest="durable", action="store_false",
                   help="own server: PostgreSQL without fsync (figures are then not the durable ones)")
    p.add_argument("--server-arg", action="append", default=[], help="extra flag for the own server (repeatable)")
    p.add_argument("--workers", type=int, default=1,
                   help="own server: run it with --workers N (CPU and RSS are then its workers' and supervisor's)")
    p.add_argument("--history", type=int, default=200, help="history: messages seeded per dialog")
    p.add_argument("--messages", type=int, default=200_000, help="search: messages in the seeded store")
    p.add_argument("--probes", type=int, default=4, help="login: connections probing with Auth by token")
    p.add_argument("--probe-interval", type=float, default=0.01, help="login: seconds between probes")
    p.add_argument("--profile", metavar="FILE", help="record the server with py-spy (collapsed stacks) into FILE")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    p.add_argument("--keep", action="store_true", help="own server: keep its temporary data directory")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    scenario = SCENARIOS[args.scenario]
    for key in ("users", "connections", "inflight", "dialog_size"):
        if getattr(args, key) is None:
            setattr(args, key, scenario.defaults.get(key))
    args.dialog_sizes = parse_sizes(str(args.dialog_size))
    if args.scenario == "fanout":
        args.users = args.dialog_sizes[1]
        args.online = min(args.online or args.users, args.users)
        args.connections = args.online
        if args.online < 2:
            raise SystemExit("--online must be at least 2 (the sender and one receiver)")
    if args.users < 1 or args.connections < 1 or args.inflight < 1 or args.duration <= 0:
        raise SystemExit("--users, --connections and --inflight must be >= 1, --duration > 0")
    if args.rate is not None and (args.rate <= 0 or args.scenario not in ("send", "history")):
        raise SystemExit("--rate: a positive number of requests per second, for send or history")
    if args.scenario in ("send", "history") and args.users < args.dialog_sizes[0]:
        raise SystemExit("--users must be at least the smallest --dialog-size")
    return args


# -- profiling -----------------------------------------------------------------------------


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


async def start_profile(args: argparse.Namespace, pid: int | None) -> asyncio.subprocess.Process | None:
    if not args.profile:
        return None
    exe = py_spy()
    if exe is None or pid is None:
        print("--profile: py-spy (pip install py-spy) and a server pid are needed; not profiling", file=sys.stderr)
        return None
    seconds = max(1, int(args.duration))
    return await asyncio.create_subprocess_exec(
        exe, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "200", "--nonblocking",
        "--format", "raw", "--output", args.profile,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )


async def finish_profile(proc: asyncio.subprocess.Process | None, args: argparse.Namespace) -> dict | None:
    if proc is None:
        return None
    try:
        _, err = await asyncio.wait_for(proc.communicate(), args.duration + 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return {"error": "py-spy did not finish"}
    if proc.returncode != 0 or not Path(args.profile).exists():
        return {"error": (err or b"").decode(errors="replace").strip()[-500:]}
    return rep.summarize_collapsed(args.profile, top=20)


# -- main ----------------------------------------------------------------------------------


async def run_scenario(args: argparse.Namespace, server: Any) -> dict[str, Any]:
    tag = secrets.token_hex(3)
    setup = DirectSetup(server.database_url, tag) if server.database_url else ApiSetup(server.host, server.port, tag)
    run = Run(args, server.host, server.port, setup)
    scenario = SCENARIOS[args.scenario](run)
    machine = rep.machine()
    t0 = time.perf_counter()
    print(f"setting up {args.scenario}...", file=sys.stderr)
    try:
        await asyncio.wait_for(scenario.prepare(), 900)
    finally:
        await setup.close()
    setup_seconds = time.perf_counter() - t0

    profiler = await start_profile(args, server.pid)
    await scenario.before_measure()
    before = snapshot(server)
    started = time.perf_counter()
    run.deadline = started + args.duration
    progress = Progress(scenario, run, started)
    progress.start()
    try:
        # Generous bound: the deadline ends every loop; this is the backstop.
        await asyncio.wait_for(scenario.measure(), args.duration + args.timeout + 600)
    finally:
        await progress.stop()
    ended = time.perf_counter()
    after = snapshot(server)
    await scenario.after_measure()
    profile = await finish_profile(profiler, args)

    seconds = ended - started
    if args.scenario == "idle" and run.hold_started is not None:
        throughput_seconds = run.hold_started - started  # opening the connections
    elif run.requests_ended is not None:
        throughput_seconds = run.requests_ended - started  # not the wait for the last pushes
    else:
        throughput_seconds = seconds
    requests = sum(r.total for r in scenario.recorders.values() if getattr(r, "request", True))
    server_cpu = after["server_cpu"] - before["server_cpu"]
    pg_cpu = after["pg_cpu"] - before["pg_cpu"]
    client = after["client_cpu"] - before["client_cpu"]
    busy = after["busy"] - before["busy"]
    report: dict[str, Any] = {
        "scenario": args.scenario,
        "params": {
            "users": args.users, "connections": args.connections, "inflight": args.inflight,
            "dialog_size": args.dialog_size, "online": getattr(args, "online", None), "rate": args.rate,
            "duration": args.duration, "codec": args.codec,
            "durable": args.durable if not args.target else None, "target": args.target or "own server",
        },
        "seconds": round(seconds, 3),
        "setup_seconds": round(setup_seconds, 1),
        "requests": {n: r.summary(throughput_seconds) for n, r in scenario.recorders.items()},
        "throughput_per_s": round(scenario.primary.ok / throughput_seconds, 1) if throughput_seconds else 0.0,
        "errors": sum(sum(r.errors.values()) for r in scenario.recorders.values()),
        "server": {
            "pid": server.pid,
            "workers": max(1, len(server_processes(server.pid)) - 1),
            "cpu_s": round(server_cpu, 3),
            "cpu_us_per_request": round(server_cpu / requests * 1e6, 1) if requests else 0.0,
            "cpu_share": round(server_cpu / seconds, 3),
            "kernel_share": round((after["server_kernel_cpu"] - before["server_kernel_cpu"]) / server_cpu, 3)
            if server_cpu else 0.0,
            "rss_kib_before": before["server_rss"],
            "rss_kib_after": after["server_rss"],
        },
        "database": {
            "cpu_s": round(pg_cpu, 3) if server.pg_pid else None,
            "cpu_us_per_request": round(pg_cpu / requests * 1e6, 1) if requests and server.pg_pid else None,
        },
        "client": {"cpu_s": round(client, 3), "cpu_share": round(client / seconds, 3)},
        "machine_busy_cpu_s": round(busy, 3),
        "other_processes_cpu_s": round(busy - server_cpu - pg_cpu - client, 3),
        "machine": machine,
        "extra": scenario.extra,
    }
    if args.scenario == "fanout" and scenario.primary.ok:
        sent = scenario.primary.ok
        scenario.extra["server_cpu_us_per_online_recipient"] = round(server_cpu / (sent * args.online) * 1e6, 2)
        if server.pg_pid:
            scenario.extra["database_cpu_us_per_message"] = round(pg_cpu / sent * 1e6, 1)
        written = scenario.extra.pop("_db_bytes", None)
        if written is not None:
            scenario.extra["wal_bytes_per_message"] = round(written[0] / sent)
            scenario.extra["table_and_index_bytes_per_message"] = round(written[1] / sent)
    pushes = scenario.pushes()
    if pushes is not None:
        pushes["per_s"] = round(pushes["received"] / seconds, 1)
        report["pushes"] = pushes
    if args.scenario == "idle":
        opened = max(scenario.opened, 1)  # type: ignore[attr-defined]
        scenario.extra["connections_open"] = scenario.opened  # type: ignore[attr-defined]
        scenario.extra["server_rss_per_connection_kib"] = round(
            (after["server_rss"] - before["server_rss"]) / opened, 2
        )
    if profile is not None:
        report["profile"] = profile
    await scenario.close()
    return report


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit()
    server = TargetServer(args) if args.target else OwnServer(args)
    try:
        if isinstance(server, OwnServer):
            print("starting a server with an embedded PostgreSQL...", file=sys.stderr)
            await asyncio.to_thread(server.start)
        return await run_scenario(args, server)
    except BaseException:
        if server.log:
            print("server log (last lines):\n" + "\n".join(server.log[-20:]), file=sys.stderr)
        raise
    finally:
        await asyncio.to_thread(server.stop)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["media"]:
        return media_main(argv[1:])  # its own harness: throughput by file size and memory bounds
    args = parse_args(argv)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    report = runner(amain(args))
    print(rep.render(report))
    if report.get("profile") and "self" in report["profile"]:
        print("  profile, self time (% of samples):")
        for name, share in report["profile"]["self"][:12]:
            print(f"    {share:5.1f}%  {name}")
    if args.json:
        rep.write_json(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
