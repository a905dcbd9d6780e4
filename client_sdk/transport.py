"""The SDK's connection: an asyncio.BufferedProtocol around the sans-IO decoder.

The socket is read into the decoder's buffers, and a large answer (a file's
range) straight into a buffer of its own size that becomes the frame's body:
one copy from the socket instead of three.

Requests are matched to answers by request id in a ``dict[id, Future]``; the
entry is removed in the future's done-callback, so nothing leaks when a caller
times out or is cancelled.  Push frames go to a bounded queue read by
``Client.events()``; if the reader falls behind, the overflow is recorded and
signalled, never silently dropped and never blocking the read loop.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
from collections.abc import Callable
from typing import Any, cast

from protocol.codecs import Codec, decode_body
from protocol.frames import Decoder, Frame, FrameError, FrameKind, encode_ping, encode_pong, encode_request
from protocol.status import BadRequest

from .errors import ConnectionClosed, ProtocolError, RequestTimeout

CLIENT_ACCEPTS = frozenset((FrameKind.RESPONSE, FrameKind.PUSH, FrameKind.ERROR, FrameKind.PING, FrameKind.PONG))
MAX_ANSWER = 64 << 20
#: Frames from this size on are received straight into their own buffer.
DIRECT_MIN = 64 << 10


class Push:
    """One server push: its event name and body."""

    __slots__ = ("name", "body")

    def __init__(self, name: str, body: dict[str, Any]) -> None:
        self.name = name
        self.body = body

    def __repr__(self) -> str:
        return f"Push({self.name!r}, {self.body!r})"


class Transport(asyncio.BufferedProtocol):
    def __init__(self, push_queue_size: int = 10_000, on_close: Callable[[Exception | None], None] | None = None) -> None:
        self._decoder = Decoder(CLIENT_ACCEPTS, MAX_ANSWER, direct_min=DIRECT_MIN)
        self._transport: asyncio.Transport | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._closed: asyncio.Future[None] | None = None
        self._close_exc: Exception | None = None
        self.pushes: asyncio.Queue[Push] = asyncio.Queue(push_queue_size)
        self.push_overflow = 0
        self.on_close = on_close

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # create_connection() hands a stream transport (plain or TLS): an asyncio.Transport
        self._transport = cast(asyncio.Transport, transport)
        self._closed = asyncio.get_running_loop().create_future()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._decoder.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        for event in self._decoder.buffer_updated(nbytes):
            if isinstance(event, FrameError):
                self._fail_all(ProtocolError(event.code, event.message))
                if self._transport is not None:
                    self._transport.close()
                return
            self._on_frame(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self._close_exc = exc
        self._fail_all(ConnectionClosed(f"connection closed{': ' + str(exc) if exc else ''}"))
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        if self.on_close is not None:
            self.on_close(exc)

    # -- frames --------------------------------------------------------------------

    def _on_frame(self, frame: Frame) -> None:
        if frame.kind == FrameKind.PUSH:
            try:
                body = decode_body(frame.codec, frame.body)
            except BadRequest:
                return
            try:
                self.pushes.put_nowait(Push(frame.name, body))
            except asyncio.QueueFull:
                self.push_overflow += 1
            return
        if frame.kind == FrameKind.PING:
            self._write(encode_pong(frame.request_id))
            return
        future = self._pending.get(frame.request_id)
        if future is None or future.done():
            return
        if frame.kind == FrameKind.PONG:
            future.set_result({})
            return
        try:
            body = decode_body(frame.codec, frame.body)
        except BadRequest as exc:
            future.set_exception(ProtocolError(400, f"undecodable answer: {exc.message}"))
            return
        if frame.kind == FrameKind.ERROR:
            status = body.get("Status") or {}
            future.set_exception(ProtocolError(int(status.get("code", 400)), str(status.get("message", ""))))
        else:
            future.set_result(body)

    def _fail_all(self, exc: Exception) -> None:
        for future in list(self._pending.values()):
            if not future.done():
                future.set_exception(exc)

    def _write(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise ConnectionClosed("connection is closed")
        self._transport.write(data)

    # -- public --------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    async def request(self, name: str, body: dict[str, Any], *, codec: int = Codec.MSGPACK, timeout: float | None = 30.0) -> dict[str, Any]:
        request_id = next(self._ids) & 0xFFFFFFFF or next(self._ids)
        data = encode_request(request_id, name, body, codec)
        return await self._round_trip(request_id, data, timeout)

    async def request_raw(self, request_id: int, data: bytes, timeout: float | None = 30.0) -> dict[str, Any]:
        """Send pre-encoded frame bytes and wait for the answer to ``request_id``."""
        return await self._round_trip(request_id, data, timeout)

    async def ping(self, timeout: float | None = 10.0) -> None:
        request_id = next(self._ids) & 0xFFFFFFFF or next(self._ids)
        await self._round_trip(request_id, encode_ping(request_id), timeout)

    def next_id(self) -> int:
        return next(self._ids) & 0xFFFFFFFF or next(self._ids)

    async def _round_trip(self, request_id: int, data: bytes, timeout: float | None) -> dict[str, Any]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        future.add_done_callback(lambda _f: self._pending.pop(request_id, None))
        try:
            self._write(data)
        except BaseException:
            # Not sent: no answer will come, and the connection's loss must not
            # later fail a future nobody awaits ("exception never retrieved").
            future.cancel()
            raise
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise RequestTimeout(f"no answer within {timeout}s") from None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def wait_closed(self) -> None:
        if self._closed is not None:
            await asyncio.shield(self._closed)


async def open_transport(
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    connect_timeout: float = 10.0,
    push_queue_size: int = 10_000,
    on_close: Callable[[Exception | None], None] | None = None,
) -> Transport:
    loop = asyncio.get_running_loop()
    try:
        _, protocol = await asyncio.wait_for(
            loop.create_connection(
                lambda: Transport(push_queue_size, on_close), host, port, ssl=ssl_context,
                server_hostname=host if ssl_context else None,
            ),
            connect_timeout,
        )
    except TimeoutError:
        raise RequestTimeout(f"could not connect to {host}:{port} within {connect_timeout}s") from None
    return protocol
