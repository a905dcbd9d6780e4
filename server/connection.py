"""One client connection: an asyncio.Protocol feeding the sans-IO decoder.

Requests are pipelined: each decoded request runs as its own task, so answers
may leave in a different order than the requests arrived (the request id
matches them).  Every frame is written with a single ``transport.write``, so
frames never interleave.  When a connection has ``max_inflight`` requests
running, the server stops reading from it until half of them are done: a
client cannot make the server queue unbounded work.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from protocol.frames import Decoder, Frame, FrameError, FrameKind, encode_error, encode_pong
from protocol.requests import MEDIA

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger("sessia.connection")

SERVER_ACCEPTS = frozenset((FrameKind.REQUEST, FrameKind.PING))


class Connection(asyncio.Protocol):
    __slots__ = (
        "app", "transport", "decoder", "peer", "inflight", "last_frame_at", "partial_since",
        "closing", "_reading_paused", "_write_paused", "_loop", "_tasks",
    )

    def __init__(self, app: App) -> None:
        self.app = app
        self.transport: asyncio.Transport | None = None
        cfg = app.config
        self.decoder = Decoder(SERVER_ACCEPTS, cfg.max_frame_size, {MEDIA: cfg.max_media_frame})
        self.peer = "?"
        self.inflight = 0
        self._loop = asyncio.get_running_loop()
        self.last_frame_at = self._loop.time()
        self.partial_since: float | None = self.last_frame_at  # nothing complete yet
        self.closing = False
        self._reading_paused = False
        self._write_paused = False
        self._tasks: set[asyncio.Task] = set()

    # -- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.app.connections.add(self)
        log.debug("connection from %s", self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.app.connections.discard(self)
        log.debug("connection from %s closed", self.peer)

    def data_received(self, data: bytes) -> None:
        events = self.decoder.feed(data)
        now = self._loop.time()
        for event in events:
            if type(event) is Frame:
                self.last_frame_at = now
                if event.kind == FrameKind.REQUEST:
                    self._start(event)
                else:
                    self._write(encode_pong(event.request_id))
            else:
                self._reject(event)  # type: ignore[arg-type]
        if self.decoder.pending:
            if self.partial_since is None:
                self.partial_since = now
        elif events:
            self.partial_since = None

    def pause_writing(self) -> None:
        # The client is not reading its answers: stop reading its requests.
        self._write_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._maybe_resume_reading()

    def eof_received(self) -> bool:
        # Half-close: finish what is in flight, then close.
        if self.inflight == 0:
            return False
        self.closing = True
        return True

    # -- requests ----------------------------------------------------------------

    def _start(self, frame: Frame) -> None:
        self.inflight += 1
        if self.inflight >= self.app.config.max_inflight:
            self._pause_reading()
        task = self._loop.create_task(self._run(frame))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, frame: Frame) -> None:
        try:
            data = await self.app.dispatcher.dispatch(frame, self.peer)
            self._write(data)
        finally:
            self.inflight -= 1
            self._maybe_resume_reading()
            if self.closing and self.inflight == 0 and self.transport is not None:
                self.transport.close()

    def _reject(self, error: FrameError) -> None:
        self._write(encode_error(error.request_id, error.code, error.message, error.codec))
        log.info("protocol error from %s: %s", self.peer, error.message)
        if error.fatal:
            self.close()

    # -- plumbing ----------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def send(self, data: bytes) -> None:
        """Write one whole frame (answers and pushes)."""
        self._write(data)

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None and not self.transport.is_closing():
            self._reading_paused = True
            self.transport.pause_reading()

    def _maybe_resume_reading(self) -> None:
        if (
            self._reading_paused
            and not self._write_paused
            and self.inflight <= self.app.config.max_inflight // 2
            and self.transport is not None
            and not self.transport.is_closing()
        ):
            self._reading_paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        """Close after what has been written is flushed."""
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    async def drain_inflight(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
