"""The composition root: builds every component once and runs the listener.

``App`` holds what handlers need (config, database, passwords, sessions, mailer,
client registry).  ``serve`` starts the embedded PostgreSQL when no external
one is configured, applies migrations, listens, and shuts down gracefully on
SIGINT/SIGTERM: stop accepting, let in-flight requests finish, close.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import ssl
import sys
import tomllib
from pathlib import Path

from storage import clients as client_store
from storage import event_log
from storage.db import Database
from storage.embedded import EmbeddedPostgres
from storage.migrate import migrate

from .accounts import announcement
from .broker import Broker, LocalBroker, make_broker
from .changes import Changes
from .config import Config
from .connection import Connection
from .dispatch import Dispatcher
from .group_commit import MessageWriter
from .mail import Mailer
from .metrics import MetricsServer, Timings
from .passwords import Passwords
from .push import PushHub
from .ratelimit import Limits
from .sessions import (
    ClientRegistry,
    Revocation,
    SessionCache,
    parse_revocations,
)

log = logging.getLogger("sessia.server")

#: Seconds between two writes of the sessions' "last seen" (docs/api/devices.md).
LAST_SEEN_INTERVAL = 30.0


class App:
    def __init__(self, config: Config, db: Database, broker: Broker | None = None) -> None:
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
        self.connections_per_ip: dict[str, int] = {}
        self.limits = Limits(config)
        self.broker = broker or LocalBroker()
        self.push = PushHub(db, self.broker, buffer_limit=config.push_buffer_limit)
        self.changes = Changes(db, self.push)
        self.message_writer = MessageWriter(db, deliver=self.push.deliver)
        self.mailer = Mailer(config)
        self.dispatcher = Dispatcher(self)

    def admit_connection(self, ip: str) -> bool:
        """Count a new connection from ``ip``; False (not counted) past
        ``--max-connections-per-ip``."""
        held = self.connections_per_ip.get(ip, 0)
        limit = self.config.max_connections_per_ip
        if limit and held >= limit:
            return False
        self.connections_per_ip[ip] = held + 1
        return True

    def release_connection(self, ip: str) -> None:
        held = self.connections_per_ip.get(ip, 0) - 1
        if held > 0:
            self.connections_per_ip[ip] = held
        else:
            self.connections_per_ip.pop(ip, None)

    async def load_clients(self) -> None:
        if self.config.clients is not None:
            for client in read_clients_file(self.config.clients):
                await client_store.register_client(self.db, client)
        await self.reload_clients()

    async def reload_clients(self) -> None:
        """Re-read the known client builds: ``python -m server admin clients``
        changes them in the database while servers run (docs/operations.md)."""
        self.clients.load(await client_store.list_clients(self.db))

    async def sessions_ended(
        self, revoked: Revocation, spare: Connection | None = None, *, token_digest: bytes | None = None
    ) -> None:
        """What follows a revocation's COMMIT (never before it: a request
        that reads the session row in between would see it live and cache
        it): the cache forgets it (and loads in progress read again), every
        connection that used it closes but ``spare``, every subscription bound
        to it ends, and the other nodes are told to do the same."""
        self.end_locally(revoked, spare, token_digest)
        signal = announcement(revoked, token_digest)
        if signal is not None:
            await self.broker.publish("sessions", signal)

    def end_locally(self, revoked: Revocation, spare: Connection | None, token_digest: bytes | None = None) -> None:
        """This node's part of ``sessions_ended``: synchronous, so that no
        request can run between the cache forgetting a session and its
        connections and subscriptions ending."""
        self.sessions.revoked(revoked, token_digest)
        self.push.end_subscriptions(revoked)
        for connection in list(self.connections):
            if connection is not spare and any(
                revoked.covers(session_id, user_id) for session_id, user_id in connection.session_ids.items()
            ):
                connection.close()

    def on_signal(self, channel: str, payload: str) -> None:
        """A signal from another node (see server/broker.py)."""
        if channel == "sessions":
            for revoked, digest in parse_revocations(payload):
                self.end_locally(revoked, None, digest)
        elif channel == "clients":
            task = asyncio.get_running_loop().create_task(self.reload_clients())
            _reloads.add(task)
            task.add_done_callback(_reload_done)
        else:
            self.push.on_signal(channel, payload)

    def close(self) -> None:
        self.passwords.close()


_reloads: set[asyncio.Task[None]] = set()  # held until done: the loop keeps only weak references


def _reload_done(task: asyncio.Task[None]) -> None:
    _reloads.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.warning("could not reload known clients: %s", task.exception())


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


def tls_context(config: Config) -> ssl.SSLContext | None:
    if config.tls_cert is None and config.tls_key is None:
        return None
    if config.tls_cert is None or config.tls_key is None:
        raise ValueError("--tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


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


async def _trim_events(app: App, stop: asyncio.Event) -> None:
    """Keep the catch-up log within its retention (docs/protocol.md)."""
    while not stop.is_set():
        try:
            removed = await event_log.trim(
                app.db, keep_days=app.config.event_keep_days, keep_per_user=app.config.event_keep_per_user
            )
            if removed:
                log.info("trimmed %d old events", removed)
        except Exception as exc:
            log.warning("event trim failed: %s", exc)
        try:
            await asyncio.wait_for(stop.wait(), app.config.event_trim_interval)
        except TimeoutError:
            pass


async def _record_last_seen(app: App, stop: asyncio.Event) -> None:
    """Write the sessions' "last seen" every LAST_SEEN_INTERVAL (``serve`` writes it once more at the end)."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), LAST_SEEN_INTERVAL)
        except TimeoutError:
            pass
        await _flush_last_seen(app)


async def _flush_last_seen(app: App) -> None:
    try:
        await app.sessions.flush_seen()
    except Exception as exc:
        log.warning("could not record session activity: %s", exc)


async def _refresh_clients(app: App, stop: asyncio.Event) -> None:
    """Reload the known client builds every ``--client-refresh-interval``
    seconds, in case a ``clients`` signal was missed (or there is no broker)."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), app.config.client_refresh_interval)
        except TimeoutError:
            pass
        if stop.is_set():
            break
        try:
            await app.reload_clients()
        except Exception as exc:
            log.warning("could not reload known clients: %s", exc)


def start_metrics(app: App) -> MetricsServer | None:
    """The Prometheus listener, when ``--metrics-port`` is set."""
    config = app.config
    if config.metrics_port is None:
        return None
    try:
        metrics = MetricsServer(app, config.metrics_host, config.metrics_port)
    except OSError as exc:
        raise OSError(f"metrics listener on {config.metrics_host}:{config.metrics_port}: {exc.strerror or exc}") from None
    print(f"metrics on http://{metrics.host}:{metrics.port}/metrics", file=sys.stderr, flush=True)
    return metrics


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
    db.timings = Timings()
    async with db.connection("migrate") as pg:
        applied = await migrate(pg)
    if applied:
        log.info("schema migrated to version %d", applied[-1])
    app = App(config, db, make_broker(config.broker, url, db.pool))
    # What start-up made lives as long as the server: out of the collector's
    # sight (gc.freeze), and young collections every 20,000 allocations rather
    # than 700, so that a page of fifty messages does not trigger several.
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    await app.broker.start(app.on_signal, app.push.catch_up_all)
    await app.load_clients()
    if config.allow_any_client:
        log.warning("--allow-any-client is set: unregistered client builds are accepted (development only)")
    if config.config_file is not None:
        log.info("settings read from %s", config.config_file)
    log.info("configuration: %s", config.redacted())
    metrics = start_metrics(app)

    tls = tls_context(config)
    if tls is None:
        log.warning("no TLS: passwords and tokens cross the network in clear (use --tls-cert/--tls-key)")
    server = await loop.create_server(lambda: Connection(app), config.host, config.port, backlog=4096, ssl=tls)
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
    trimmer = asyncio.create_task(_trim_events(app, stop))
    last_seen = asyncio.create_task(_record_last_seen(app, stop))
    refresher = asyncio.create_task(_refresh_clients(app, stop))
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
        trimmer.cancel()
        refresher.cancel()
        await asyncio.gather(sweeper, trimmer, refresher, return_exceptions=True)
        if metrics is not None:
            metrics.close()
        await asyncio.gather(last_seen, return_exceptions=True)
        await _flush_last_seen(app)  # what the requests drained above did
        await app.push.close()
        await app.broker.close()
        await db.close()
        app.close()
        if embedded is not None and embedded.started_here:
            await asyncio.to_thread(embedded.stop)
        log.info("stopped")
