"""The thumbnail workers: a few child processes (server/thumb_worker.py) that
decode images for the server, at most ``--thumb-workers`` at a time.

Why processes and not threads (``python -m bench.thumbs``; docs/security.md
has a run): an image is hostile input handed to C decoders, and only a
process can be held to hard limits.  A worker that takes longer than
``--thumb-timeout`` is killed, and its core is free at once (a thread cannot
be stopped: it would keep decoding after the client got its answer); its
address space is capped at ``--thumb-memory-mib``, so a bomb fails in the
worker, not in the server.  And a decoding in a thread holds the interpreter
lock often enough to stall the event loop by up to 0.13 s (the largest PNG
allowed), against 0.016 s with a worker.  The price is small: a worker starts
once (0.1-0.2 s, then it is reused) and the image crosses a pipe.

The semaphore is the bound on thumbnailing: a burst of requests for new
thumbnails queues here and takes at most ``--thumb-workers`` cores, leaving
the event loop and PostgreSQL theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Mapping

import msgpack

from .imaging import Caps, Refused, Thumbnail
from .thumb_worker import LENGTH

log = logging.getLogger("sessia.thumbs")

#: Largest answer a worker may send: two thumbnails of at most 640 x 640
#: RGBA as PNG, with room to spare.
MAX_ANSWER = 16 << 20


class PoolStopped(Exception):
    """The server is stopping: the image was not judged, and nothing about
    it may be remembered."""


class WorkerFailed(Exception):
    """The worker died or broke the protocol (a crash in a decoder, an
    out-of-memory kill): its request got no answer."""


class Worker:
    """One child process and its pipes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, memory_mib: int) -> Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server.thumb_worker", str(os.getpid()), str(memory_mib),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=None,
        )
        return cls(proc)

    async def ask(self, request: Mapping[str, object], data: bytes) -> dict[str, object]:
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None
        head: bytes = msgpack.packb({**request, "size": len(data)})
        try:
            stdin.write(LENGTH.pack(len(head)) + head)
            stdin.write(data)
            await stdin.drain()
            (length,) = LENGTH.unpack(await stdout.readexactly(LENGTH.size))
            if length > MAX_ANSWER:
                raise WorkerFailed(f"answer of {length} bytes")
            answer: dict[str, object] = msgpack.unpackb(await stdout.readexactly(length))
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise WorkerFailed(str(exc) or type(exc).__name__) from None
        return answer

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await self.proc.wait()

    async def stop(self, grace: float = 2.0) -> None:
        """End of input first (the worker exits by itself), SIGKILL if it does not."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), grace)
        except TimeoutError:
            await self.kill()


class ThumbPool:
    def __init__(self, *, workers: int, timeout: float, memory_mib: int, caps: Caps | None = None) -> None:
        self.timeout = timeout
        self.memory_mib = memory_mib
        self.caps = caps or Caps()
        self._slots = asyncio.Semaphore(max(1, workers))
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()
        self._closed = False
        #: workers killed for taking longer than ``timeout`` (a metric)
        self.timed_out = 0

    async def make(self, load: Callable[[], Awaitable[bytes]], sides: Mapping[str, int]) -> list[Thumbnail]:
        """Thumbnails of the image ``load`` reads; ``Refused`` for one that
        cannot be thumbnailed within the caps, the time or the memory.

        ``load`` runs once a worker is free, so a burst of requests waiting
        here holds no image in memory, only the ones being decoded."""
        async with self._slots:
            worker = await self._take()
            try:
                data = await load()
            except BaseException:
                self._busy.discard(worker)
                self._idle.append(worker)
                raise
            request = {"sides": dict(sides),
                       "caps": [self.caps.max_pixels, self.caps.max_side, self.caps.max_frames]}
            try:
                async with asyncio.timeout(self.timeout):
                    answer = await worker.ask(request, data)
            except TimeoutError:
                self.timed_out += 1
                await self._discard(worker)
                raise Refused(f"image could not be decoded within {self.timeout:g} s") from None
            except WorkerFailed as exc:
                await self._discard(worker)
                if self._closed:
                    raise PoolStopped() from None
                log.warning("a thumbnail worker failed (%s, exit code %s): the image is refused this time",
                            exc, worker.proc.returncode)
                raise Refused("image could not be decoded", lasting=False) from None
            except BaseException:
                # Cancelled mid-request: the pipe holds half an exchange.
                await self._discard(worker)
                raise
            self._busy.discard(worker)
            self._idle.append(worker)
        return parse_answer(answer)

    async def _take(self) -> Worker:
        if self._closed:
            raise PoolStopped()
        while self._idle:
            worker = self._idle.pop()
            if worker.proc.returncode is None:
                self._busy.add(worker)
                return worker
        worker = await Worker.start(self.memory_mib)
        if self._closed:  # closed while it started: close() did not see it
            await worker.stop()
            raise PoolStopped()
        self._busy.add(worker)
        return worker

    async def _discard(self, worker: Worker) -> None:
        self._busy.discard(worker)
        await asyncio.shield(worker.kill())

    @property
    def running(self) -> int:
        return len(self._idle) + len(self._busy)

    async def close(self) -> None:
        """Stop every worker (server shutdown)."""
        self._closed = True
        workers = [*self._idle, *self._busy]
        self._idle.clear()
        self._busy.clear()
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)


def parse_answer(answer: Mapping[str, object]) -> list[Thumbnail]:
    refused = answer.get("refused")
    if isinstance(refused, str):
        raise Refused(refused)
    thumbs = answer.get("thumbs")
    if not isinstance(thumbs, list):
        raise Refused("image could not be decoded")
    return [Thumbnail(str(tag), str(ext), int(w), int(h), bytes(data)) for tag, ext, w, h, data in thumbs]
