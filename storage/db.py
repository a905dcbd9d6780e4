"""The connection pool and named transactions.

Every query goes through ``Database``, so one place maps connection failures to
``StorageUnavailable`` and rollbacks by PostgreSQL to ``StorageBusy``
(storage/errors.py), and one place could time or label transactions.  Areas
take a ``Database`` and never touch the pool directly; a transaction is a
``Database`` too (``atomic`` yields a ``Transaction``), so every storage
function runs alone or inside one unchanged.  The raw connection
(``connection``) is only for what needs one session of its own: migrations,
which hold an advisory lock across their transactions.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from .errors import StorageBusy, StorageUnavailable

#: A connection as the pool lends it (asyncpg wraps it in a proxy that
#: forwards every method); what migrations and transactions run on.
Connection = asyncpg.Connection | PoolConnectionProxy

log = logging.getLogger("sessia.storage")

#: Errors that mean "the database is not there right now", not "the query is wrong".
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    ConnectionError,
)


#: Errors after which PostgreSQL has rolled the transaction back and the same
#: work, tried again, is expected to succeed: the request had no effect, and
#: the caller is told to retry (``StorageBusy``), never a 500.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)


def _unavailable(name: str, exc: BaseException) -> StorageUnavailable:
    log.warning("database unavailable during %s: %s", name, type(exc).__name__)
    return StorageUnavailable(name)


@contextlib.contextmanager
def unavailable_on_connection_loss(name: str):
    try:
        yield
    except CONNECTION_ERRORS as exc:
        raise _unavailable(name, exc) from None


async def _reset(conn: asyncpg.Connection) -> None:
    """What a connection needs before it goes back to the pool.  asyncpg's
    default reset runs ``RESET ALL; UNLISTEN *; CLOSE ALL...``, a round trip
    per request; pooled connections here never LISTEN, SET or DECLARE, so only
    an abandoned transaction needs undoing."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class Database:
    """A pool plus the conveniences every storage module uses."""

    #: Optional ``observe(name, seconds)`` sink for the time of each named
    #: operation (server/metrics.py sets one); recording costs one clock read.
    timings: Any = None

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        #: what the one-statement calls run on: the pool here, the
        #: transaction's connection in ``Transaction``
        self._target: asyncpg.Pool | Connection = pool

    @contextlib.contextmanager
    def _timed(self, name: str):
        """``unavailable_on_connection_loss`` plus the operation's duration."""
        started = time.perf_counter()
        try:
            with unavailable_on_connection_loss(name):
                yield
        except TRANSIENT_ERRORS as exc:
            log.warning("%s rolled back by PostgreSQL (%s): to be tried again", name, type(exc).__name__)
            raise StorageBusy(name) from None
        finally:
            if self.timings is not None:
                self.timings.observe(name, time.perf_counter() - started)

    @classmethod
    async def connect(cls, url: str, *, min_size: int = 2, max_size: int = 20) -> Database:
        pool = await asyncpg.create_pool(
            url,
            min_size=min_size,
            max_size=max_size,
            command_timeout=30,
            max_inactive_connection_lifetime=300,
            reset=_reset,
        )
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    @contextlib.asynccontextmanager
    async def connection(self, name: str) -> AsyncIterator[Connection]:
        """A pooled connection of its own, outside any transaction (migrations)."""
        with unavailable_on_connection_loss(name):
            async with self.pool.acquire() as conn:
                yield conn

    async def _call(self, name: str, method: Callable[..., Awaitable[Any]], sql: str, args: tuple) -> Any:
        """One statement: connection loss becomes ``StorageUnavailable`` and the time
        goes to ``timings``.  Written out rather than as context managers: a
        generator-based one costs a few microseconds per query, and every
        request runs some."""
        started = time.perf_counter()
        try:
            return await method(sql, *args)
        except CONNECTION_ERRORS as exc:
            raise _unavailable(name, exc) from None
        finally:
            if self.timings is not None:
                self.timings.observe(name, time.perf_counter() - started)

    async def fetch(self, name: str, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await self._call(name, self._target.fetch, sql, args)

    async def fetchrow(self, name: str, sql: str, *args: Any) -> asyncpg.Record | None:
        return await self._call(name, self._target.fetchrow, sql, args)

    async def fetchval(self, name: str, sql: str, *args: Any) -> Any:
        return await self._call(name, self._target.fetchval, sql, args)

    async def execute(self, name: str, sql: str, *args: Any) -> str:
        return await self._call(name, self._target.execute, sql, args)

    @contextlib.asynccontextmanager
    async def atomic(self, name: str) -> AsyncIterator[Transaction]:
        """A ``Database`` bound to one transaction: storage functions written
        for ``Database`` run inside it unchanged, so a handler can combine
        several of them (and the event log) into one commit.  ``name`` labels
        it in logs and timings; leaving the block by an exception rolls back."""
        with self._timed(name):
            async with self.pool.acquire() as conn, conn.transaction():
                yield Transaction(conn)


class Transaction(Database):
    """The ``Database`` interface on one connection inside a transaction.
    ``atomic`` inside it is the same transaction (no savepoint): a function
    that wants its statements committed together gets that either way."""

    def __init__(self, conn: Connection) -> None:  # noqa: D107 - no pool here
        self.conn = conn
        self._target = conn

    @contextlib.asynccontextmanager
    async def connection(self, name: str) -> AsyncIterator[Connection]:
        yield self.conn

    @contextlib.asynccontextmanager
    async def atomic(self, name: str) -> AsyncIterator[Transaction]:
        yield self
