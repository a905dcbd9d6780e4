"""Room for the large answers of one connection (a downloaded file).

A pipelining client can ask for the same 1 MiB file 300 times and never read:
if every request read its file and built its answer as soon as it ran, the
server would hold 300 MiB for that one socket.  So a request about to build a
large answer first takes room for it here, and gets it only while the
connection's transport is taking what it is given (not paused) and the room
taken plus the answers queued for writing stay within the connection's
``--max-connection-buffer``.  One answer larger than that bound still gets
room when it is alone, so a large file can always be downloaded.

Room is given in request order.  It is taken back when the answer has been
built: the answer then counts as queued bytes, and the next waiter is
considered one step later, once that answer is queued (see ``release``).
"""

from __future__ import annotations

import asyncio
from collections import deque

from protocol.status import Unavailable


class AnswerRoom:
    __slots__ = ("limit", "taken", "_waiters", "_loop", "_closed")

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        self.limit = limit
        self.taken = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._loop = loop
        self._closed = False

    @property
    def waiting(self) -> bool:
        return bool(self._waiters)

    def fits(self, size: int, queued: int) -> bool:
        """Whether ``size`` more bytes fit beside ``queued`` bytes awaiting write
        and the room already taken (always, when no room is taken)."""
        return self.taken == 0 or self.taken + queued + size <= self.limit

    async def take(self, size: int, queued: int, paused: bool) -> None:
        """Wait for room for an answer of ``size`` bytes.  Raises ``Unavailable``
        if the connection closes first: its answer would never be sent."""
        if self._closed:
            raise Unavailable("connection closed")
        if not paused and not self._waiters and self.fits(size, queued):
            self.taken += size
            return
        future: asyncio.Future[None] = self._loop.create_future()
        entry = (size, future)
        self._waiters.append(entry)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                self.taken -= size  # granted in the same step it was cancelled
            else:
                try:
                    self._waiters.remove(entry)
                except ValueError:
                    pass
            raise

    def release(self, size: int) -> None:
        """Give back room after the answer was built.  The caller queues the
        answer in the same step; waiters are considered on the next one,
        when the connection calls ``grant`` with that answer counted."""
        self.taken -= size

    def grant(self, queued: int) -> None:
        """Give room to waiters, in order, while it fits (the connection calls
        this when its transport resumes and after it flushes)."""
        waiters = self._waiters
        while waiters and self.fits(waiters[0][0], queued):
            size, future = waiters.popleft()
            if not future.done():
                self.taken += size
                future.set_result(None)

    def close(self) -> None:
        """The connection is gone: no waiting answer will be built."""
        self._closed = True
        waiters, self._waiters = self._waiters, deque()
        for _, future in waiters:
            if not future.done():
                future.set_exception(Unavailable("connection closed"))
