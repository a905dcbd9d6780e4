"""The composition root: builds every component once and runs the listener.

``App`` holds what handlers need (config, database, passwords, sessions,
client registry).  ``serve`` starts the embedded PostgreSQL when no external
one is configured, applies migrations, listens, and shuts down gracefully on
SIGINT/SIGTERM: stop accepting, let in-flight requests finish, close.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import tomllib
from pathlib import Path

from storage import clients as client_store
from storage.db import Database
from storage.embedded import EmbeddedPostgres
from storage.migrate import migrate

from .config import Config
from .connection import Connection
from .dispatch import Dispatcher
from .passwords import Passwords
from .sessions import ClientRegistry, SessionCache

log = logging.getLogger("sessia.server")


class App:
    def __init__(self, config: Config, db: Database) -> None:
        self.config = config
        self.db = db
        self.passwords = Passwords(
            time_cost=config.argon2_time_cost,
            memory_kib=config.argon2_memory_kib,
            parallelism=config.argon2_parallelism,
            threads=config.hash_threads,
        )
        self.clients = ClientRegistry(config.allow_any_client)
        self.sessions = SessionCache(db, self.clients, config.session_cache_size)
        self.connections: set[Connection] = set()
        self.dispatcher = Dispatcher(self)

    async def load_clients(self) -> None:
        if self.config.clients is not None:
            for client in read_clients_file(self.config.clients):
                await client_store.register_client(self.db, client)
        self.clients.load(await client_store.list_clients(self.db))

    def close(self) -> None:
        self.passwords.close()


def read_clients_file(path: Path) -> list[client_store.KnownClient]:
    """``[[client]]`` tables with ``nameclient``, ``hashcert``, ``min_version``."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    out = []
    for entry in data.get("client", []):
        out.append(
            client_store.KnownClient(
                nameclient=str(entry["nameclient"]),
                hashcert=str(entry["hashcert"]),
                min_version=int(entry.get("min_version", 0)),
            )
        )
    return out


async def _sweep(app: App, stop: asyncio.Event) -> None:
    """Close idle connections and ones dribbling a frame too slowly."""
    cfg = app.config
    interval = max(0.2, min(cfg.read_timeout, cfg.idle_timeout) / 4)
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except TimeoutError:
            pass
        now = loop.time()
        for conn in list(app.connections):
            if conn.partial_since is not None and now - conn.partial_since > cfg.read_timeout:
                log.info("closing %s: frame not completed within %.0fs", conn.peer, cfg.read_timeout)
                conn.close()
            elif conn.inflight == 0 and now - conn.last_frame_at > cfg.idle_timeout:
                log.info("closing %s: idle for %.0fs", conn.peer, cfg.idle_timeout)
                conn.close()


async def serve(config: Config, *, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    embedded: EmbeddedPostgres | None = None
    url = config.database_url
    if url is None:
        embedded = EmbeddedPostgres(config.data_dir, durable=config.durable)
        url = await asyncio.to_thread(embedded.start)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    db = await Database.connect(url, max_size=config.db_pool_size)
    async with db.connection("migrate") as conn:
        applied = await migrate(conn)
    if applied:
        log.info("schema migrated to version %d", applied[-1])
    app = App(config, db)
    await app.load_clients()
    if config.allow_any_client:
        log.warning("--allow-any-client is set: unregistered client builds are accepted (development only)")
    log.info("configuration: %s", config.redacted())

    server = await loop.create_server(lambda: Connection(app), config.host, config.port, backlog=4096)
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    sockname = server.sockets[0].getsockname()
    print(f"listening on {sockname[0]}:{sockname[1]}", file=sys.stderr, flush=True)
    if ready is not None:
        ready.set()
    sweeper = asyncio.create_task(_sweep(app, stop))
    try:
        await stop.wait()
    finally:
        log.info("shutting down: no new connections, finishing in-flight requests")
        server.close()
        await server.wait_closed() if not app.connections else None
        conns = list(app.connections)
        try:
            await asyncio.wait_for(
                asyncio.gather(*(c.drain_inflight() for c in conns)), config.shutdown_timeout
            )
        except TimeoutError:
            log.warning("in-flight requests still running after %.0fs; closing anyway", config.shutdown_timeout)
        for conn in conns:
            conn.close()
        sweeper.cancel()
        await asyncio.gather(sweeper, return_exceptions=True)
        await db.close()
        app.close()
        if embedded is not None and embedded.started_here:
            await asyncio.to_thread(embedded.stop)
        log.info("stopped")
