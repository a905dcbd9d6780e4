"""One client connection: an asyncio.Protocol feeding the sans-IO decoder.

Requests are pipelined: each decoded request runs as its own task, so answers
may leave in a different order than the requests arrived (the request id
matches them).  Frames are whole when queued and leave together at the end of
the loop iteration, so frames never interleave.  When a connection has ``max_inflight`` requests
running, further requests wait in arrival order (only those already read,
at most one read's worth) and the server stops reading from it until half of
them are done: a client cannot make the server run or queue unbounded work.

Nor can it make the server hold unbounded memory by not reading its answers.
What a connection holds is the bodies of its running requests plus its answers
not yet sent (queued frames and the transport's buffer).  While that is over
``max_connection_buffer``, or while the transport is over its high-water mark
(the peer is not keeping up), requests already read wait and no more are
read; they start again as the answers drain.  Large answers (files) also take
room before they are built (``server/answer_room.py``), so requests already
running do not build them all at once.  A connection that leaves its answers
unread for ``write_timeout`` seconds is told why (an ERROR frame, request id
0) and closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, cast

from protocol.frames import Decoder, Frame, FrameError, FrameKind, encode_error, encode_pong
from protocol.requests import MEDIA
from protocol.requests.media import UPLOAD_PART
from protocol.status import Status

from .answer_room import AnswerRoom

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger("sessia.connection")

SERVER_ACCEPTS = frozenset((FrameKind.REQUEST, FrameKind.PING))
#: Seconds a closing connection waits for the peer to close its side too.
LINGER = 2.0
#: Frames of one loop iteration up to this many bytes are joined into one
#: write; beyond it they are handed over as they are (still one system call).
JOIN_LIMIT = 256 * 1024


class Connection(asyncio.Protocol):
    __slots__ = (
        "app", "transport", "decoder", "peer", "inflight", "last_frame_at", "partial_since",
        "closing", "_reading_paused", "_write_paused", "_loop", "_tasks", "_backlog", "_draining",
        "_eof_sent", "_peer_eof", "_linger", "_lost", "ip", "_admitted", "session_ids", "_out", "_out_size",
        "_max_inflight", "_limit", "_in_bytes", "room", "_stall", "_stall_size",
    )

    def __init__(self, app: App) -> None:
        self.app = app
        self.transport: asyncio.Transport | None = None
        cfg = app.config
        self.decoder = Decoder(
            SERVER_ACCEPTS, cfg.max_frame_size, {MEDIA: cfg.max_media_frame, UPLOAD_PART: cfg.max_part_frame}
        )
        self.peer = "?"
        self.ip = "?"
        self._admitted = False  # counted against the per-address connection limit
        self.inflight = 0
        # session id -> user id of every session a request on this connection
        # used: revoking one of them closes the connection (App.revoke_session).
        self.session_ids: dict[int, int] = {}
        self._loop = asyncio.get_running_loop()
        self.last_frame_at = self._loop.time()
        self.partial_since: float | None = self.last_frame_at  # nothing complete yet
        self.closing = False
        self._reading_paused = False
        self._write_paused = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._backlog: deque[Frame] = deque()  # read, waiting for an in-flight slot
        self._draining = False
        self._eof_sent = False
        self._peer_eof = False
        self._linger: asyncio.TimerHandle | None = None
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._out: list[bytes | bytearray] | None = None  # frames written in this loop iteration, not yet flushed
        self._out_size = 0
        self._max_inflight = cfg.max_inflight
        self._limit = cfg.max_connection_buffer
        self._in_bytes = 0  # bodies of the requests running
        self.room = AnswerRoom(cfg.max_connection_buffer, self._loop)
        self._stall: asyncio.TimerHandle | None = None  # write timeout, armed while writing is paused
        self._stall_size = 0

    # -- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream server's transports are Transports
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.ip = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        if not self.app.admit_connection(self.ip):
            self._refuse(429, "too many connections from this address")
            return
        self._admitted = True
        if self.app.config.socket_send_buffer:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.app.config.socket_send_buffer)
        self.app.connections.add(self)
        log.debug("connection from %s", self.peer)

    def _refuse(self, code: int, message: str) -> None:
        """Answer a connection the server will not serve with one ERROR frame
        (request id 0), then close it cleanly without reading any request."""
        log.debug("refusing connection from %s: %s", self.peer, message)
        self._write(encode_error(0, code, message))
        self._draining = True
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self._admitted:
            self._admitted = False
            self.app.release_connection(self.ip)
        self._backlog.clear()  # nobody is left to answer
        self.room.close()
        self.app.connections.discard(self)
        self.app.push.unsubscribe(self)
        if self._linger is not None:
            self._linger.cancel()
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        if not self._lost.done():
            self._lost.set_result(None)
        log.debug("connection from %s closed", self.peer)

    def data_received(self, data: bytes) -> None:
        if self._eof_sent:
            return  # closing: input is read only so that the close stays clean
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
                self._reject(event)
        # The read timeout is for one frame: it starts again whenever a frame
        # completes, so a busy client whose writes end mid-frame is not "slow";
        # and it does not run while the server itself has stopped reading.
        if not self.decoder.pending or self._reading_paused:
            self.partial_since = None
        elif self.partial_since is None or events:
            self.partial_since = now

    def pause_writing(self) -> None:
        # The client is not reading its answers: stop reading and starting its
        # requests, and give it ``write_timeout`` seconds to take some.
        self._write_paused = True
        self._pause_reading()
        if self._stall is None and self.transport is not None:
            self._stall_size = self.transport.get_write_buffer_size()
            self._stall = self._loop.call_later(self.app.config.write_timeout, self._stalled)

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        if self.room.waiting:
            self.room.grant(self._out_size)
        if self._backlog:
            self._pump()
        self._maybe_resume_reading()

    def _stalled(self) -> None:
        """Writing has been paused for ``write_timeout`` seconds: close the
        connection if the peer took nothing meanwhile (its buffer did not
        shrink), else wait another period."""
        self._stall = None
        transport = self.transport
        if transport is None or transport.is_closing() or self._eof_sent or not self._write_paused:
            return
        size = transport.get_write_buffer_size()
        if size < self._stall_size:
            self._stall_size = size
            self._stall = self._loop.call_later(self.app.config.write_timeout, self._stalled)
            return
        timeout = self.app.config.write_timeout
        log.info("closing %s: %d bytes unread for %.0fs", self.peer, self.write_buffer_size, timeout)
        self._write(encode_error(0, Status.TOO_MANY_REQUESTS, f"closing: answers and pushes left unread for {timeout:g}s"))
        self.close()

    def eof_received(self) -> bool:
        # Half-close: finish what is in flight (and waiting), then close.
        self._peer_eof = True
        if self.inflight == 0 or self._eof_sent:
            return False
        self.closing = True
        return True

    # -- requests ----------------------------------------------------------------

    def _start(self, frame: Frame) -> None:
        # One read may hold many frames: beyond the limits they wait their turn.
        if (
            self._backlog
            or self.inflight >= self._max_inflight
            or self._write_paused
            or (self.inflight and self._in_bytes + self._out_size > self._limit)
        ):
            self._backlog.append(frame)
            self._pause_reading()
            return
        self._launch(frame)

    def _launch(self, frame: Frame) -> None:
        self.inflight += 1
        self._in_bytes += len(frame.body)
        if self.inflight >= self._max_inflight or self._in_bytes > self._limit:
            self._pause_reading()
        task = self._loop.create_task(self._run(frame))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _pump(self) -> None:
        """Start waiting requests while the connection has room for them; one
        always starts when none runs, so a request larger than the bound
        still runs (alone)."""
        backlog = self._backlog
        while (
            backlog
            and not self._draining
            and not self._write_paused
            and self.inflight < self._max_inflight
            and (not self.inflight or self._in_bytes + self._out_size <= self._limit)
        ):
            self._launch(backlog.popleft())

    async def _run(self, frame: Frame) -> None:
        try:
            data = await self.app.dispatcher.dispatch(frame, self)
            self._write(data)
        finally:
            self.inflight -= 1
            self._in_bytes -= len(frame.body)
            if self._backlog:
                self._pump()
            self._maybe_resume_reading()
            if self.closing and self.inflight == 0:
                self.close()

    def _reject(self, error: FrameError) -> None:
        self._write(encode_error(error.request_id, error.code, error.message, error.codec))
        log.info("protocol error from %s: %s", self.peer, error.message)
        if error.fatal:
            # The stream is lost from here on; what was read before it is
            # still answered, then the connection closes.
            self.closing = True
            self._pause_reading()
            if self.inflight == 0:
                self.close()

    # -- plumbing ----------------------------------------------------------------

    def _write(self, data: bytes | bytearray) -> None:
        """Queue one whole frame; the frames queued during one loop iteration
        (an answer and the pushes that follow it, several answers of a
        pipelining client, a batch's pushes) leave in one ``transport.write``
        at its end: one system call instead of one per frame."""
        transport = self.transport
        if transport is not None and not self._eof_sent and not transport.is_closing():
            if self._out is None:
                self._out = [data]
                self._loop.call_soon(self._flush)
            else:
                self._out.append(data)
            self._out_size += len(data)

    def _flush(self) -> None:
        out, size = self._out, self._out_size
        self._out, self._out_size = None, 0
        transport = self.transport
        if out and transport is not None and not transport.is_closing():
            if len(out) == 1:
                transport.write(out[0])
            elif size <= JOIN_LIMIT:
                transport.write(b"".join(out))
            else:
                transport.writelines(out)  # large answers: no second copy of them all
        # What waited for the queued frames to leave may go on now.
        if self.room.waiting and not self._write_paused:
            self.room.grant(0)
        if self._backlog:
            self._pump()
            self._maybe_resume_reading()

    @contextlib.asynccontextmanager
    async def answer_room(self, size: int) -> AsyncIterator[None]:
        """``async with conn.answer_room(size):`` build an answer of about
        ``size`` bytes (a file, a page) once the connection has room for it
        (server/answer_room.py); the room is given back when the block ends,
        once the answer is built and just before it is written."""
        await self.room.take(size, self._out_size, self._write_paused)
        try:
            yield
        finally:
            self.room.release(size)

    def send(self, data: bytes) -> None:
        """Write one whole frame (answers and pushes)."""
        self._write(data)

    @property
    def write_buffer_size(self) -> int:
        """Bytes written but not yet taken by the kernel (the transport's
        buffer plus frames queued in this loop iteration)."""
        transport = self.transport
        return self._out_size + (transport.get_write_buffer_size() if transport is not None else 0)

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None and not self.transport.is_closing():
            self._reading_paused = True
            self.partial_since = None  # the read timeout waits while we do not read
            self.transport.pause_reading()

    def _maybe_resume_reading(self) -> None:
        if (
            self._reading_paused
            and not self._write_paused
            and not self._draining
            and not self._backlog
            and self.inflight <= self._max_inflight // 2
            and self._in_bytes <= self._limit // 2
            and self.transport is not None
            and not self.transport.is_closing()
        ):
            self._reading_paused = False
            if self.decoder.pending:
                self.partial_since = self._loop.time()
            self.transport.resume_reading()

    def close(self) -> None:
        """Close once what has been written is flushed, without losing it.

        Closing a socket that still holds unread input makes the kernel reset
        the connection, and a reset can destroy answers the peer has not read
        yet.  So the server half-closes (FIN after the last frame), reads and
        drops whatever the peer still sends until it closes too, and gives up
        after ``LINGER`` seconds.  Answers of requests still running are not
        sent.  Safe to call more than once.
        """
        self.closing = True
        self._backlog.clear()
        self.app.connections.discard(self)
        transport = self.transport
        if transport is None or self._eof_sent or transport.is_closing():
            return
        self._flush()
        if self._peer_eof or not transport.can_write_eof():
            transport.close()  # nothing more can arrive: a plain close is clean
            return
        self._eof_sent = True
        self.partial_since = None
        transport.write_eof()
        self._linger = self._loop.call_later(LINGER, transport.abort)
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()

    async def drain_inflight(self) -> None:
        """Shutdown: read no more requests, drop those read but not started
        (never run, so never answered), wait for the running ones to answer,
        then close (see ``close``) and wait up to ``LINGER`` for the peer."""
        self._draining = True
        self._pause_reading()
        self._backlog.clear()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self.close()
        await asyncio.wait([self._lost], timeout=LINGER)
