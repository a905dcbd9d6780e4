"""``--workers N``: N server processes on one port, run by a supervisor.

One Python process serves on one core.  With ``--workers N`` the process the
operator starts becomes a supervisor that does once what the workers share,
then runs N workers that each serve like a node of a cluster.

The supervisor checks the settings, reserves the port (bound with
SO_REUSEPORT and never listening: the port stays this server's while a worker
restarts, and no connection waits in a queue nobody accepts from), starts the
embedded PostgreSQL (or opens ``--database-url``) and migrates it.  Then it
starts each worker as ``python -m server worker`` and writes the worker's
settings to its stdin: its own ``Config``, pickled, with the port and the
database filled in (a password in them never shows in ``ps``).  A worker binds
the same port with SO_REUSEPORT, so the kernel spreads new connections over
the workers, and serves as one node of a cluster on one database: events,
revocations and cache invalidations cross workers through the broker exactly
as they cross nodes (docs/scaling.md), which is why ``--broker none`` cannot
go with workers.

Each worker writes ``ready`` on its stdout once it listens; when all have, the
supervisor prints ``listening on HOST:PORT`` and writes ``--ready-file``.  A
worker that exits, however, is started again after a back-off (0.5 s,
doubling up to 30 s while it keeps dying; 0.5 s again once one has lived a
minute), and both are logged.  SIGTERM or SIGINT is forwarded to every worker,
which drains as a lone server does; then the embedded PostgreSQL stops.
Nothing outlives the supervisor: every worker is started with a parent-death
signal (SIGTERM), as the embedded PostgreSQL is (SIGINT), so a ``kill -9`` of
the supervisor stops them as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import signal
import sys
from dataclasses import dataclass, replace
from typing import BinaryIO

from storage.embedded import die_with_parent

from .app import (
    StartupError,
    bind_listener,
    database_url,
    migrate_database,
    open_database,
    prepare_data_dir,
    read_clients_file,
    remove_ready_file,
    serve,
    tls_context,
    write_ready_file,
)
from .config import Config

log = logging.getLogger("sessia.workers")

#: What a worker writes on its stdout once it listens.
READY = b"ready\n"
#: Seconds a worker may take to listen (its pool, broker and clients loaded).
START_TIMEOUT = 60.0
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
#: A worker that lived this long before it exited is restarted after FIRST_BACKOFF again.
STEADY_AFTER = 60.0
#: Seconds a worker gets past --shutdown-timeout to exit after SIGTERM before it is killed.
EXIT_GRACE = 10.0


# -- the worker's side ----------------------------------------------------------------


def read_assignment(stream: BinaryIO) -> tuple[Config, int]:
    """A worker's settings and number, as its supervisor wrote them on its stdin."""
    if stream.isatty():
        raise StartupError("a worker is started by its supervisor (python -m server --workers N), not by hand")
    config, index = pickle.load(stream)
    if not isinstance(config, Config) or not isinstance(index, int):
        raise StartupError("a worker is started by its supervisor (python -m server --workers N), not by hand")
    return config, index


async def work(config: Config, index: int) -> None:
    """Serve as worker ``index``, and tell the supervisor once listening."""
    ready = asyncio.Event()

    async def announce() -> None:
        await ready.wait()
        sys.stdout.buffer.write(READY)
        sys.stdout.buffer.flush()

    announcer = asyncio.create_task(announce())
    try:
        await serve(config, ready=ready, worker=index)
    finally:
        announcer.cancel()


# -- the supervisor ---------------------------------------------------------------------


@dataclass
class Worker:
    """One worker slot: the process that fills it now, restarted when it exits."""

    index: int
    settings: Config
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    backoff: float = FIRST_BACKOFF

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    async def start(self) -> None:
        """Start the process and wait until it listens; a StartupError if it
        exits first or takes longer than START_TIMEOUT."""
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server", "worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            # The kernel stops it when the supervisor dies, even by kill -9.
            preexec_fn=die_with_parent(signal.SIGTERM),
        )
        self.started_at = asyncio.get_running_loop().time()
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(pickle.dumps((self.settings, self.index)))
        with contextlib.suppress(ConnectionError):
            await self.proc.stdin.drain()
        self.proc.stdin.close()
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise StartupError(f"worker {self.index} did not listen within {START_TIMEOUT:.0f}s") from None
        if line != READY:
            code = await self.proc.wait()
            raise StartupError(f"worker {self.index} {exit_reason(code)} before it listened (its error is above)")

    async def keep(self, stop: asyncio.Event) -> None:
        """Start the worker again whenever it exits, until ``stop``."""
        loop = asyncio.get_running_loop()
        while self.proc is not None:
            code = await self.proc.wait()
            if stop.is_set():
                return
            lived = loop.time() - self.started_at
            if lived >= STEADY_AFTER:
                self.backoff = FIRST_BACKOFF
            log.warning("worker %d (pid %d) %s after %.1fs; starting it again in %.1fs",
                        self.index, self.pid, exit_reason(code), lived, self.backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.backoff)
                return
            self.backoff = min(self.backoff * 2, MAX_BACKOFF)
            try:
                await self.start()
            except (StartupError, OSError) as exc:
                log.warning("worker %d could not be started again: %s", self.index, exc)
                continue
            log.info("worker %d started again (pid %d)", self.index, self.pid)

    async def stop(self, timeout: float) -> None:
        """SIGTERM (a drain, as for a lone server), then SIGKILL after ``timeout``."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            log.warning("worker %d (pid %d) still running %.0fs after SIGTERM: killed", self.index, proc.pid, timeout)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def worker_settings(config: Config, index: int, port: int, database_url: str) -> Config:
    """What worker ``index`` runs with: the shared port and database; the
    ready file is the supervisor's; metrics on ``--metrics-port`` + index
    (each worker has its own listener; 0: each picks a free port)."""
    metrics_port = config.metrics_port + index if config.metrics_port else config.metrics_port
    return replace(config, port=port, database_url=database_url, ready_file=None, workers=1, metrics_port=metrics_port)


async def supervise(config: Config) -> None:
    """Run ``config.workers`` workers until SIGTERM/SIGINT (see the module)."""
    if config.broker == "none":
        raise StartupError(
            f"--workers {config.workers} needs a broker for the workers to act as one server:"
            " use --broker postgres (the default) or nats://host:port, not none"
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as started:
        # What serve() checks first, once for all workers; then the port, then the database.
        tls_context(config)
        if config.clients is not None:
            read_clients_file(config.clients)
        prepare_data_dir(config.data_dir)
        if config.ready_file is not None:
            remove_ready_file(config.ready_file)
        sock = bind_listener(config.host, config.port, shared=True)
        started.callback(sock.close)
        host, port = sock.getsockname()[:2]
        url, embedded = database_url(config, started)
        db = await open_database(url, max_size=1, embedded=embedded)
        try:
            await migrate_database(db, url)
        finally:
            await db.close()
        workers = [Worker(i, worker_settings(config, i, port, url)) for i in range(config.workers)]

        async def stop_all() -> None:
            await asyncio.gather(*(w.stop(config.shutdown_timeout + EXIT_GRACE) for w in workers))

        started.push_async_callback(stop_all)
        try:
            async with asyncio.TaskGroup() as group:  # one failing start cancels the others
                for worker in workers:
                    group.create_task(worker.start())
        except* StartupError as failed:
            raise failed.exceptions[0] from None
        log.info("%d workers accepting on %s:%d (pids %s)", len(workers), host, port,
                 ", ".join(str(w.pid) for w in workers))
        print(f"listening on {host}:{port}", file=sys.stderr, flush=True)
        if config.ready_file is not None:
            write_ready_file(config.ready_file, host, port)
            started.callback(remove_ready_file, config.ready_file)
        keepers = [asyncio.create_task(w.keep(stop)) for w in workers]
        try:
            await stop.wait()
        finally:
            log.info("stopping %d workers", len(workers))
            for keeper in keepers:
                keeper.cancel()
            await asyncio.gather(*keepers, return_exceptions=True)
        # Leaving the block stops the workers, then the database, then frees the port.
    log.info("stopped")
