"""Cross-node signals: a small fan-out interface with two implementations.

Server nodes share one PostgreSQL.  When a node commits events, or revokes a
session, the other nodes must hear of it.  The signal is small ("user 7
reached seq 42", "forget this token"); the data itself is always read from
PostgreSQL, so a lost signal costs latency, never data (every node catches its
subscribers up whenever its broker reconnects).

``PgBroker`` uses LISTEN/NOTIFY on a dedicated connection: no extra component.
``NatsBroker`` (``--broker nats://host:port``) carries the same signals on NATS
subjects for deployments with many nodes.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import asyncpg

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg

log = logging.getLogger("sessia.broker")

#: "clients": the known client builds changed (``python -m server admin clients``).
CHANNELS = ("events", "sessions", "typing", "clients")
MAX_PAYLOAD = 7000  # PostgreSQL's NOTIFY payload limit is 8000 bytes

Handler = Callable[[str, str], None]  # (channel, payload)


def chunk_items(prefix: str, items: list[str], limit: int = MAX_PAYLOAD) -> list[str]:
    """Split ``prefix + ",".join(items)`` into payloads under ``limit`` bytes."""
    out: list[str] = []
    current: list[str] = []
    size = len(prefix)
    for item in items:
        if current and size + len(item) + 1 > limit:
            out.append(prefix + ",".join(current))
            current, size = [], len(prefix)
        current.append(item)
        size += len(item) + 1
    if current:
        out.append(prefix + ",".join(current))
    return out


class Broker:
    """Publish a signal to every other node; hand received ones to ``handler``."""

    def __init__(self) -> None:
        self.node_id = secrets.token_hex(4)
        self._handler: Handler | None = None
        self._on_reconnect: Callable[[], Awaitable[None]] | None = None

    async def start(self, handler: Handler, on_reconnect: Callable[[], Awaitable[None]]) -> None:
        self._handler = handler
        self._on_reconnect = on_reconnect

    async def publish(self, channel: str, payload: str) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        pass

    def _received(self, channel: str, payload: str) -> None:
        origin, _, body = payload.partition("|")
        if origin == self.node_id or self._handler is None:
            return
        try:
            self._handler(channel, body)
        except Exception:
            log.exception("bad %s signal", channel)


class LocalBroker(Broker):
    """A single node: nothing to tell anyone."""

    async def publish(self, channel: str, payload: str) -> None:
        return None


class PgBroker(Broker):
    """LISTEN/NOTIFY on a dedicated connection, reconnected with backoff."""

    def __init__(self, url: str, pool: asyncpg.Pool) -> None:
        super().__init__()
        self._url = url
        self._pool = pool
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._connected = asyncio.Event()

    async def start(self, handler: Handler, on_reconnect: Callable[[], Awaitable[None]]) -> None:
        await super().start(handler, on_reconnect)
        self._task = asyncio.create_task(self._keep_listening())
        try:
            await asyncio.wait_for(self._connected.wait(), 10)
        except TimeoutError:
            log.warning("LISTEN connection not ready yet; retrying in the background")

    async def _keep_listening(self) -> None:
        delay = 0.2
        first = True
        while not self._closing:
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self._url)
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                for channel in CHANNELS:
                    await conn.add_listener(f"sessia_{channel}", self._on_notify)
                self._conn = conn
                self._connected.set()
                delay = 0.2
                if not first and self._on_reconnect is not None:
                    log.info("LISTEN connection restored; catching subscribers up")
                    await self._on_reconnect()
                first = False
                await lost.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("LISTEN connection failed (%s); retrying in %.1fs", type(exc).__name__, delay)
            self._conn = None
            if self._closing:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            first = False

    def _on_notify(self, _conn: object, _pid: int, channel: str, payload: object) -> None:
        # a NOTIFY payload is text: asyncpg hands it over as str
        self._received(channel.removeprefix("sessia_"), str(payload))

    async def publish(self, channel: str, payload: str) -> None:
        try:
            await self._pool.execute("SELECT pg_notify($1, $2)", f"sessia_{channel}", f"{self.node_id}|{payload}")
        except Exception as exc:  # the data is in the log; other nodes catch up on reconnect
            log.warning("NOTIFY %s failed: %s", channel, type(exc).__name__)

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._conn is not None:
            await self._conn.close()


class NatsBroker(Broker):
    """The same signals on NATS subjects ``sessia.<channel>``."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = url
        self._nc: NatsClient | None = None

    async def start(self, handler: Handler, on_reconnect: Callable[[], Awaitable[None]]) -> None:
        await super().start(handler, on_reconnect)
        import nats  # optional dependency: pip install sessia[nats]

        async def reconnected() -> None:
            log.info("NATS connection restored; catching subscribers up")
            if self._on_reconnect is not None:
                await self._on_reconnect()

        async def disconnected() -> None:
            log.warning("NATS connection lost; reconnecting")

        self._nc = await nats.connect(
            self._url,
            name=f"sessia-{self.node_id}",
            reconnected_cb=reconnected,
            disconnected_cb=disconnected,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
        )
        for channel in CHANNELS:

            async def on_message(msg: Msg, channel: str = channel) -> None:
                self._received(channel, msg.data.decode())

            await self._nc.subscribe(f"sessia.{channel}", cb=on_message)

    async def publish(self, channel: str, payload: str) -> None:
        if self._nc is None:
            return
        try:
            await self._nc.publish(f"sessia.{channel}", f"{self.node_id}|{payload}".encode())
        except Exception as exc:
            log.warning("NATS publish %s failed: %s", channel, type(exc).__name__)

    async def close(self) -> None:
        if self._nc is not None:
            try:
                await self._nc.drain()
            except Exception:
                pass


def make_broker(spec: str | None, url: str, pool: asyncpg.Pool) -> Broker:
    """``None``/``"postgres"``: LISTEN/NOTIFY; ``nats://...``: NATS; ``"none"``: single node."""
    if spec is None or spec == "postgres":
        return PgBroker(url, pool)
    if spec == "none":
        return LocalBroker()
    if spec.startswith(("nats://", "tls://")):
        return NatsBroker(spec)
    raise ValueError(f"unknown broker {spec!r}: use postgres, none or nats://host:port")
