"""The composition root: builds every component once and runs the listener.

``App`` holds what handlers need (config, database, passwords, sessions, mailer,
client registry).  ``serve`` binds its port first (a port in use fails before
anything else is started), starts the embedded PostgreSQL when no external one
is configured, applies migrations, listens, and shuts down gracefully on
SIGINT/SIGTERM: stop accepting, let in-flight requests finish, close.  Every
start-up step registers its undo as it succeeds, so a start that fails half
way stops what it started, and says in one line (``StartupError``) what failed
and what to do.  ``check`` (``python -m server --check``) runs the same checks
and starts nothing that stays running.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import ssl
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
import asyncpg

from protocol.requests.media import THUMB_SIZES
from storage import clients as client_store
from storage import dialog_log, event_log, rate_limits
from storage import uploads as upload_store
from storage.blobs import BlobStore, LocalBlobs
from storage.db import Database
from storage.embedded import EmbeddedError, EmbeddedPostgres
from storage.errors import BlobStoreUnavailable
from storage.migrate import available, current_version, migrate, pending

from .accounts import announcement
from .blob_stores import make_blob_store
from .broker import Broker, LocalBroker, make_broker
from .changes import Changes
from .config import Config
from .connection import Connection
from .dispatch import Dispatcher
from .group_commit import MessageWriter
from .history_cache import PageCache
from .mail import Mailer, SmtpTarget
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
from .thumb_pool import ThumbPool
from .thumbnails import Thumbnails
from .uploads import Staging

log = logging.getLogger("sessia.server")


class StartupError(Exception):
    """A start that cannot go on: one line that names what failed (host:port,
    database, role, path) and what to do; ``python -m server`` prints it
    without a traceback and exits 1."""

#: Seconds between two writes of the sessions' "last seen" (docs/api/devices.md).
LAST_SEEN_INTERVAL = 30.0
#: Seconds between two deletions of the rate-limit budgets that are whole again.
BUDGET_SWEEP_INTERVAL = 60.0


class App:
    def __init__(
        self,
        config: Config,
        db: Database,
        broker: Broker | None = None,
        blobs: BlobStore | None = None,
        uploads_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.db = db
        #: where media bytes live (storage/blobs.py); local disk unless configured
        self.blobs: BlobStore = blobs or LocalBlobs(config.media_dir)
        #: uploads in parts staged on this node's disk (server/uploads.py)
        self.staging = Staging(uploads_dir or config.uploads_dir, durable=config.durable)
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
        self.limits = Limits(config, db)
        self.broker = broker or LocalBroker()
        self.push = PushHub(db, self.broker, buffer_limit=config.push_buffer_limit,
                            pages=PageCache(int(config.history_cache_mib * (1 << 20))))
        self.changes = Changes(db, self.push, large_from=config.large_dialog_members)
        self.thumbnails = Thumbnails(
            db, self.blobs, self.changes,
            ThumbPool(workers=config.thumb_workers, timeout=config.thumb_timeout, memory_mib=config.thumb_memory_mib),
            THUMB_SIZES,
        )
        self.message_writer = MessageWriter(db, deliver=self.push.deliver, deliver_dialog=self.push.deliver_dialog)
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
    """``[[client]]`` tables with ``nameclient``, ``hashcert``, ``min_version``;
    a StartupError naming the file when it cannot be read or is malformed."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise StartupError(f"--clients {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise StartupError(f"--clients {path}: not valid TOML: {exc}") from None
    out = []
    for i, entry in enumerate(data.get("client", []), 1):
        try:
            out.append(
                client_store.KnownClient(
                    nameclient=str(entry["nameclient"]),
                    hashcert=str(entry["hashcert"]),
                    min_version=int(entry.get("min_version", 0)),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StartupError(f"--clients {path}: [[client]] number {i}: missing or bad {exc}") from None
    return out


def tls_context(config: Config) -> ssl.SSLContext | None:
    if config.tls_cert is None and config.tls_key is None:
        return None
    if config.tls_cert is None or config.tls_key is None:
        raise ValueError("--tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except OSError as exc:
        raise StartupError(
            f"cannot load --tls-cert {config.tls_cert} / --tls-key {config.tls_key}: {exc.strerror or exc}"
        ) from None
    except ssl.SSLError as exc:
        raise StartupError(
            f"--tls-cert {config.tls_cert} / --tls-key {config.tls_key}: not a matching PEM certificate and key"
            f" ({exc.reason or exc})"
        ) from None
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


async def _trim(app: App, stop: asyncio.Event) -> None:
    """Keep the catch-up logs (users' and large dialogs') within their
    retention (docs/protocol.md), every ``--event-trim-interval``; and every
    minute forget the rate-limit budgets that are whole again
    (storage/rate_limits.py).  All are single DELETEs, safe if several
    processes run them at once (each row goes once), so nodes each run their
    own; of ``--workers`` only worker 0 does."""
    loop = asyncio.get_running_loop()
    next_trim = loop.time()
    cfg = app.config
    while not stop.is_set():
        if loop.time() >= next_trim:
            next_trim = loop.time() + cfg.event_trim_interval
            try:
                removed = await event_log.trim(
                    app.db, keep_days=cfg.event_keep_days, keep_per_user=cfg.event_keep_per_user
                )
                removed += await dialog_log.trim(
                    app.db, keep_days=cfg.event_keep_days, keep_per_dialog=cfg.event_keep_per_dialog
                )
                if removed:
                    log.info("trimmed %d old events", removed)
            except Exception as exc:
                log.warning("event trim failed: %s", exc)
        try:
            await rate_limits.forget_whole(app.db)
        except Exception as exc:
            log.warning("could not forget spent rate limits: %s", exc)
        try:
            await asyncio.wait_for(stop.wait(), max(0.0, min(next_trim - loop.time(), BUDGET_SWEEP_INTERVAL)))
        except TimeoutError:
            pass


async def _expire_uploads(app: App, stop: asyncio.Event) -> None:
    """Remove this node's uploads older than ``--upload-ttl`` and staged files
    no unfinished upload owns (left by a crash between finishing an upload and
    removing its file).  The files are listed before the rows are read, so a
    file of an upload started meanwhile is never taken for a leftover."""
    staging = app.staging
    interval = min(600.0, max(0.5, app.config.upload_ttl / 4))
    while not stop.is_set():
        try:
            expired = await upload_store.expire(app.db, staging.node)
            await staging.remove(expired)
            on_disk = await asyncio.to_thread(staging.staged_ids)
            live = await upload_store.unfinished_ids(app.db, staging.node)
            await staging.remove([i for i in on_disk if i not in live and not staging.busy(i)])
            if expired:
                log.info("removed %d expired uploads", len(expired))
        except Exception as exc:
            log.warning("upload expiry failed: %s", exc)
        try:
            await asyncio.wait_for(stop.wait(), interval)
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


def start_metrics(app: App, whose: str = "") -> MetricsServer | None:
    """The Prometheus listener, when ``--metrics-port`` is set; ``whose``
    prefixes the line that announces it ("worker 1 ")."""
    config = app.config
    if config.metrics_port is None:
        return None
    try:
        metrics = MetricsServer(app, config.metrics_host, config.metrics_port)
    except OSError as exc:
        raise StartupError(
            f"cannot listen for metrics on {config.metrics_host}:{config.metrics_port}: {exc.strerror or exc}"
            " (choose another --metrics-port)"
        ) from None
    print(f"{whose}metrics on http://{metrics.host}:{metrics.port}/metrics", file=sys.stderr, flush=True)
    return metrics


def prepare_data_dir(path: Path) -> None:
    """The data dir exists and is a directory (media, outbox and the embedded
    PostgreSQL live there), or a StartupError naming it."""
    if path.exists() and not path.is_dir():
        raise StartupError(f"data dir {path} is a file, not a directory: move it away or choose another --data-dir")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"cannot create data dir {path}: {exc.strerror or exc} (choose another --data-dir)") from None


def bind_listener(host: str, port: int, *, shared: bool = False) -> socket.socket:
    """The listening address, bound before anything else starts: a port in use
    fails the start at once, with nothing to undo.  ``listen`` comes later
    (``create_server``), so until the server is ready a client is refused
    rather than left waiting.  ``shared``: SO_REUSEPORT, for ``--workers``,
    whose processes each bind and listen on the same port (the kernel spreads
    new connections over the listening ones; only processes of the same user
    can join)."""
    where = f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen on {where}: {exc.strerror} (check --host)") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        hint = " (another process listens there: stop it or choose another --port)" if exc.errno == 98 else ""
        raise StartupError(f"cannot listen on {where}: {exc.strerror or exc}{hint}") from None
    return sock


def describe_database(url: str) -> tuple[str, str, str]:
    """(where, database, role) of a PostgreSQL URL, for messages: where is
    ``host:port`` or the Unix socket's path."""
    try:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        host = parts.hostname or (query.get("host") or [""])[0] or "localhost"
        port = parts.port or int((query.get("port") or ["5432"])[0])
        role = unquote(parts.username or "") or (query.get("user") or [""])[0] or os.environ.get("USER", "?")
        database = unquote(parts.path.lstrip("/")) or (query.get("dbname") or [""])[0] or role
    except ValueError:
        return url, "?", "?"
    where = f"{host}/.s.PGSQL.{port}" if host.startswith("/") else f"{host}:{port}"
    return where, database, role


async def open_database(url: str, *, max_size: int, embedded: EmbeddedPostgres | None = None) -> Database:
    """The pool, or a StartupError saying which database could not be opened and why."""
    where, database, role = describe_database(url)
    source = f"the embedded PostgreSQL in {embedded.pgdata}" if embedded else f"PostgreSQL at {where}"
    fix = "" if embedded else " (check --database-url)"
    try:
        return await Database.connect(url, min_size=min(2, max_size), max_size=max_size)
    except asyncpg.InvalidCatalogNameError:
        raise StartupError(
            f"database {database!r} does not exist on {source}: create it (createdb {database})"
            f" or name another in --database-url"
        ) from None
    except asyncpg.InvalidPasswordError:
        raise StartupError(f"{source} refused the password of role {role!r}{fix}") from None
    except asyncpg.InvalidAuthorizationSpecificationError as exc:
        raise StartupError(f"{source} refused role {role!r}: {exc}: create the role or correct --database-url") from None
    except asyncpg.PostgresError as exc:
        raise StartupError(f"{source}, database {database!r}, role {role!r}: {exc}") from None
    except OSError as exc:  # TimeoutError too
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise StartupError(f"cannot reach {source}: {reason}: is it running?{fix}") from None
    except (ValueError, asyncpg.InterfaceError) as exc:
        raise StartupError(f"--database-url is not a usable PostgreSQL URL: {exc}") from None


def start_embedded(config: Config, *, exclusive: bool) -> EmbeddedPostgres:
    """The embedded PostgreSQL under ``--data-dir``, started (or shared) in
    this thread: the main thread, which lives as long as the server (the
    kernel's parent-death signal follows the thread that started the child)."""
    embedded = EmbeddedPostgres(config.data_dir, durable=config.durable)
    try:
        embedded.start(exclusive=exclusive)
    except EmbeddedError as exc:
        raise StartupError(str(exc)) from None
    return embedded


def database_url(config: Config, started: contextlib.AsyncExitStack) -> tuple[str, EmbeddedPostgres | None]:
    """The database to use: ``--database-url``, or the embedded PostgreSQL
    started here (and stopped by ``started`` when the server stops or its
    start fails)."""
    if config.database_url is not None:
        return config.database_url, None
    embedded = start_embedded(config, exclusive=True)
    started.push_async_callback(stop_embedded, embedded)
    return embedded.url, embedded


async def open_blob_store(config: Config) -> BlobStore:
    """The configured media store, checked: reachable, the bucket there, the
    credentials accepted; else a StartupError naming endpoint and bucket
    (never the credentials)."""
    try:
        blobs = make_blob_store(config)
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    try:
        await blobs.check()
    except BlobStoreUnavailable as exc:
        await blobs.close()
        raise StartupError(f"cannot use the media store, {config.media_description()}: {exc.reason}") from None
    return blobs


async def stop_embedded(embedded: EmbeddedPostgres) -> None:
    if embedded.started_here:
        await asyncio.to_thread(embedded.stop)


async def serve(
    config: Config, *, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None, worker: int | None = None
) -> None:
    """Run one server process until stopped.  ``worker``: this process is
    worker number ``worker`` of ``--workers`` (server/workers.py), whose
    supervisor has already started the database (``config.database_url``
    names it), migrated it and reserved the port: the worker joins the port
    (SO_REUSEPORT), leaves the ready file to the supervisor, and only worker
    0 runs the jobs one pass of which serves the whole cluster."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as started:
        # Cheap checks first, then the port, then the database: each step's
        # undo is registered as it succeeds and runs, in reverse, on any failure.
        tls = tls_context(config)
        problem = config.media_problem()
        if problem is not None:
            raise StartupError(problem)
        if config.clients is not None:
            read_clients_file(config.clients)
        prepare_data_dir(config.data_dir)
        if config.ready_file is not None:
            # A file left by an earlier run that did not stop cleanly must not
            # announce this one before it listens.
            remove_ready_file(config.ready_file)
        sock = bind_listener(config.host, config.port, shared=worker is not None)
        started.callback(sock.close)
        url, embedded = database_url(config, started)
        db = await open_database(url, max_size=config.db_pool_size, embedded=embedded)
        started.push_async_callback(db.close)
        db.timings = Timings()
        if worker is None:
            await migrate_database(db, url)
        blobs = await open_blob_store(config)
        started.push_async_callback(blobs.close)
        # Each worker stages the uploads it receives in a directory of its own
        # (server/uploads.py coordinates the writers of one process).
        uploads_dir = None if worker is None else config.uploads_dir / f"worker-{worker}"
        app = App(config, db, make_broker(config.broker, url, db.pool), blobs, uploads_dir)
        started.callback(app.close)
        started.push_async_callback(app.thumbnails.pool.close)
        try:
            app.staging.prepare()
        except OSError as exc:
            raise StartupError(f"cannot use {app.staging.root} for uploads: {exc.strerror or exc}") from None
        # What start-up made lives as long as the server: out of the collector's
        # sight (gc.freeze), and young collections every 20,000 allocations rather
        # than 700, so that a page of fifty messages does not trigger several.
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        try:
            await app.broker.start(app.on_signal, app.push.catch_up_all)
        except OSError as exc:
            raise StartupError(f"cannot reach the broker {config.broker}: {exc.strerror or exc} (check --broker)") from None
        started.push_async_callback(app.broker.close)
        started.push_async_callback(app.push.close)
        await app.load_clients()
        if config.allow_any_client:
            log.warning("--allow-any-client is set: unregistered client builds are accepted (development only)")
        if config.config_file is not None:
            log.info("settings read from %s", config.config_file)
        for line in config.summary():
            log.info("%s", line)
        metrics = start_metrics(app, "" if worker is None else f"worker {worker} ")
        if metrics is not None:
            started.callback(metrics.close)
        if tls is None:
            log.warning("no TLS: passwords and tokens cross the network in clear (use --tls-cert/--tls-key)")
        server = await loop.create_server(lambda: Connection(app), sock=sock, backlog=4096, ssl=tls)
        await _run_until_stopped(app, server, stop, ready, worker)
        # Leaving the block stops, in reverse, what start-up started: metrics,
        # push hub, broker, password threads, pool, the embedded PostgreSQL.
    log.info("stopped")


async def migrate_database(db: Database, url: str) -> None:
    """Apply the pending migrations (under their advisory lock), or a StartupError."""
    try:
        async with db.connection("migrate") as pg:
            applied = await migrate(pg)
    except asyncpg.PostgresError as exc:
        where, database, _ = describe_database(url)
        raise StartupError(f"cannot migrate the schema of database {database!r} at {where}: {exc}") from None
    if applied:
        log.info("schema migrated to version %d", applied[-1])


async def _run_until_stopped(
    app: App, server: asyncio.Server, stop: asyncio.Event, ready: asyncio.Event | None, worker: int | None
) -> None:
    """Serve until SIGINT/SIGTERM (or ``stop``), then drain: stop accepting,
    let in-flight requests finish within ``--shutdown-timeout``, close them."""
    config = app.config
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    sockname = server.sockets[0].getsockname()
    if worker is None:
        print(f"listening on {sockname[0]}:{sockname[1]}", file=sys.stderr, flush=True)
    else:  # the supervisor says "listening on" once every worker does
        log.info("accepting on %s:%d (pid %d)", sockname[0], sockname[1], os.getpid())
    if config.ready_file is not None:
        write_ready_file(config.ready_file, sockname[0], sockname[1])
    if ready is not None:
        ready.set()
    jobs = [asyncio.create_task(_sweep(app, stop)), asyncio.create_task(_refresh_clients(app, stop))]
    if not worker:  # one pass serves every process on the database: worker 0 runs it
        jobs.append(asyncio.create_task(_trim(app, stop)))
    last_seen = asyncio.create_task(_record_last_seen(app, stop))
    jobs.append(asyncio.create_task(_expire_uploads(app, stop)))  # each process its own staged files
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
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        await asyncio.gather(last_seen, return_exceptions=True)
        await _flush_last_seen(app)  # what the requests drained above did
        if config.ready_file is not None:
            remove_ready_file(config.ready_file)


def write_ready_file(path: Path, host: str, port: int) -> None:
    """``--ready-file``: ``host:port`` (``[host]:port`` for IPv6) and a newline.
    Written to a temporary file in the same directory and renamed over
    ``path``, so that a reader polling for the file sees it whole or not at
    all, never a half-written port."""
    text = f"[{host}]:{port}\n" if ":" in host else f"{host}:{port}\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StartupError(f"cannot write the ready file {path}: {exc.strerror or exc} (check --ready-file)") from None


def remove_ready_file(path: Path) -> None:
    """A stopped server's ready file would tell the next reader a port that
    no longer answers: it goes when the server stops cleanly."""
    with contextlib.suppress(OSError):
        path.unlink()


async def check(config: Config, out: list[str]) -> bool:
    """``python -m server --check``: the settings, the files they name, the
    database (its schema version and pending migrations) and the SMTP server,
    one line each in ``out``; True if all passed.  Nothing it starts stays
    running: an embedded PostgreSQL it had to start is stopped again."""
    ok = True

    def report(passed: bool, what: str, detail: str) -> None:
        nonlocal ok
        ok = ok and passed
        out.append(f"{'ok  ' if passed else 'FAIL'} {what}: {detail}")

    source = f" (from {config.config_file})" if config.config_file else ""
    report(True, "settings", f"valid{source}")
    def tls() -> str:
        return "off (no --tls-cert)" if tls_context(config) is None else f"{config.tls_cert} and its key load"

    def clients() -> str:
        if config.clients is None:
            return "none registered at start (--clients not set)"
        return f"{len(read_clients_file(config.clients))} client builds in {config.clients}"

    def data_dir() -> str:
        prepare_data_dir(config.data_dir)
        return f"{config.data_dir.resolve()} is a usable directory"

    steps: list[tuple[str, Callable[[], str]]] = [("tls", tls), ("clients", clients), ("data dir", data_dir)]
    for what, step in steps:
        try:
            report(True, what, step())
        except StartupError as exc:
            report(False, what, str(exc))
    try:
        report(True, "database", await _check_database(config))
    except StartupError as exc:
        report(False, "database", str(exc))
    try:
        report(True, "smtp", await _check_smtp(config))
    except StartupError as exc:
        report(False, "smtp", str(exc))
    try:
        blobs = await open_blob_store(config)
        await blobs.close()
        report(True, "media store", config.media_description() + " is usable")
    except StartupError as exc:
        report(False, "media store", str(exc))
    return ok


async def _check_database(config: Config) -> str:
    embedded: EmbeddedPostgres | None = None
    url = config.database_url
    if url is None:
        if config.data_dir.exists() and not config.data_dir.is_dir():
            raise StartupError(f"data dir {config.data_dir} is a file, not a directory")
        embedded = start_embedded(config, exclusive=False)
        url = embedded.url
    try:
        db = await open_database(url, max_size=1, embedded=embedded)
        try:
            async with db.connection("check") as conn:
                server_version = await conn.fetchval("SHOW server_version")
                version = await current_version(conn)
                missing = await pending(conn)
        except asyncpg.PostgresError as exc:
            raise StartupError(f"cannot read the schema version: {exc}") from None
        finally:
            await db.close()
    finally:
        if embedded is not None:
            await stop_embedded(embedded)
    where = f"embedded in {embedded.pgdata}" if embedded else describe_database(url)[0]
    latest = available()[-1].version if available() else 0
    todo = f"{len(missing)} migrations pending (applied at start)" if missing else "no migrations pending"
    return f"PostgreSQL {server_version} ({where}), schema version {version} of {latest}, {todo}"


async def _check_smtp(config: Config) -> str:
    try:
        target = SmtpTarget.from_config(config)
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    if target is None:
        return f"not configured: mail goes to {config.data_dir / 'outbox'}"
    where = f"{target.host}:{target.port}"
    client = aiosmtplib.SMTP(
        hostname=target.host, port=target.port, use_tls=target.implicit_tls, start_tls=target.starttls,
        timeout=config.smtp_timeout,
    )
    try:
        async with asyncio.timeout(config.smtp_timeout):
            await client.connect()
            if target.username and target.password:
                await client.login(target.username, target.password)
            await client.quit()
    except aiosmtplib.SMTPAuthenticationError as exc:
        raise StartupError(f"{where} refused the login of {target.username!r}: {exc.message}") from None
    except (aiosmtplib.SMTPException, OSError) as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
        reason = getattr(cause, "strerror", None) or str(cause) or type(cause).__name__
        raise StartupError(f"cannot reach the SMTP server {where}: {reason} (check --smtp-url)") from None
    login = f", logged in as {target.username}" if target.username and target.password else ""
    return f"{where} answered{login}"
