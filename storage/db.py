"""The connection pool and named transactions.

Every query goes through ``Database``, so one place maps connection failures to
``Unavailable`` (503) and one place could time or label transactions.  Areas
take a ``Database`` (or, inside a transaction, an ``asyncpg.Connection``) and
never touch the pool directly.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from protocol.status import Unavailable

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


@contextlib.contextmanager
def unavailable_on_connection_loss(name: str):
    try:
        yield
    except CONNECTION_ERRORS as exc:
        log.warning("database unavailable during %s: %s", name, type(exc).__name__)
        raise Unavailable("storage unavailable, try again shortly") from None


class Database:
    """A pool plus the conveniences every storage module uses."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def connect(cls, url: str, *, min_size: int = 2, max_size: int = 20) -> Database:
        pool = await asyncpg.create_pool(
            url,
            min_size=min_size,
            max_size=max_size,
            command_timeout=30,
            max_inactive_connection_lifetime=300,
        )
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    @contextlib.asynccontextmanager
    async def transaction(self, name: str) -> AsyncIterator[asyncpg.Connection]:
        """A connection in a transaction; ``name`` labels it in logs."""
        with unavailable_on_connection_loss(name):
            async with self.pool.acquire() as conn, conn.transaction():
                yield conn

    @contextlib.asynccontextmanager
    async def connection(self, name: str) -> AsyncIterator[asyncpg.Connection]:
        with unavailable_on_connection_loss(name):
            async with self.pool.acquire() as conn:
                yield conn

    async def fetch(self, name: str, sql: str, *args: Any) -> list[asyncpg.Record]:
        with unavailable_on_connection_loss(name):
            return await self.pool.fetch(sql, *args)

    async def fetchrow(self, name: str, sql: str, *args: Any) -> asyncpg.Record | None:
        with unavailable_on_connection_loss(name):
            return await self.pool.fetchrow(sql, *args)

    async def fetchval(self, name: str, sql: str, *args: Any) -> Any:
        with unavailable_on_connection_loss(name):
            return await self.pool.fetchval(sql, *args)

    async def execute(self, name: str, sql: str, *args: Any) -> str:
        with unavailable_on_connection_loss(name):
            return await self.pool.execute(sql, *args)
