"""Uploads in parts, staged on this node's disk (``<data-dir>/uploads/``).

Each upload is one sparse file, ``<upload id>.part``: a part is written at
``part × part size`` with ``pwrite`` in a worker thread (and made durable with
``fdatasync`` before it is recorded, unless ``--no-durable``), so parts may
arrive in any order, several at once, and again.  PostgreSQL remembers which
parts were recorded (storage/uploads.py); this module remembers, in memory,
what only this process can know: which part writes are running right now and
whether the upload is being finished.  That is enough to keep the two apart,
because only the node holding the staged file can write or finish it:

- a finish waits until the part writes already running are done, and a part
  that arrives while the upload is finished or being finished is refused, so
  the bytes hashed are the bytes stored;
- two finishes of one upload at once run it once, and both get its key.

A node is named by a random id kept in ``<data-dir>/uploads/node``, so a node
restarted on the same data dir finds its uploads again (resume after a
crash), and a part sent to another node is told where its upload lives.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar, cast

from protocol.status import Conflict, TooManyRequests
from storage.blobs import file_digest, fsync_dir

T = TypeVar("T")

#: Part writes one upload may take beyond its number of parts, twice over: a
#: client resuming re-sends what it is not sure of, and that is all it needs.
#: This bounds the disk work one ``UploadStart`` (the rate-limited step) buys.
RESENDS = 8


class _Upload:
    """What this process knows of one staged upload."""

    __slots__ = ("writing", "written", "idle", "finishing")

    def __init__(self) -> None:
        self.writing = 0  # part writes running now
        self.written = 0  # part writes since this process started
        self.idle = asyncio.Event()
        self.idle.set()
        self.finishing: asyncio.Future[object] | None = None  # done: finished


class Staging:
    """The staged files of this node and the coordination of their writers."""

    def __init__(self, root: Path, *, durable: bool) -> None:
        self.root = root
        self.durable = durable
        self.node = ""
        self._uploads: dict[str, _Upload] = {}

    def prepare(self) -> None:
        """Create the directory and read (or make) this node's id.  Blocking: at start."""
        self.root.mkdir(parents=True, exist_ok=True)
        node_file = self.root / "node"
        try:
            self.node = node_file.read_text().strip()
        except FileNotFoundError:
            self.node = ""
        if not self.node:
            tmp = self.root / "node.tmp"
            tmp.write_text(secrets.token_hex(8) + "\n")
            os.replace(tmp, node_file)
            fsync_dir(self.root)
            self.node = node_file.read_text().strip()

    def path(self, upload_id: str) -> Path:
        return self.root / f"{upload_id}.part"

    def _state(self, upload_id: str) -> _Upload:
        state = self._uploads.get(upload_id)
        if state is None:
            state = self._uploads[upload_id] = _Upload()
        return state

    async def write(self, upload_id: str, offset: int, data: bytes, parts: int) -> None:
        """Write one part's bytes at ``offset``.  Refused while the upload is
        being finished or once it is, and once it has taken twice its parts
        (plus ``RESENDS``) in writes."""
        state = self._state(upload_id)
        if state.finishing is not None:
            done = state.finishing.done() and not state.finishing.cancelled() and state.finishing.exception() is None
            raise Conflict("upload is already finished" if done else "upload is being finished")
        if state.written >= 2 * parts + RESENDS:
            raise TooManyRequests(
                f"this upload took {state.written} part writes for its {parts} parts: start a new upload"
            )
        state.written += 1
        state.writing += 1
        state.idle.clear()
        try:
            await asyncio.to_thread(self._pwrite, self.path(upload_id), offset, data)
        finally:
            state.writing -= 1
            if not state.writing:
                state.idle.set()

    def _pwrite(self, path: Path, offset: int, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.pwrite(fd, view, offset)
                view = view[written:]
                offset += written
            if self.durable:
                os.fdatasync(fd)
        finally:
            os.close(fd)

    async def finish(self, upload_id: str, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work`` (hash, store, record) once no part is being written
        and none will be; a finish that arrives meanwhile gets the same
        outcome.  If ``work`` fails the upload may be finished again."""
        state = self._state(upload_id)
        if state.finishing is not None:
            return cast(T, await asyncio.shield(state.finishing))
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        state.finishing = future
        try:
            await state.idle.wait()
            result = await work()
        except BaseException as exc:
            state.finishing = None
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                future.exception()  # seen: a failure nobody else waited for is not "never retrieved"
            raise
        future.set_result(result)
        return result

    async def digest(self, upload_id: str) -> tuple[bytes, int]:
        """SHA-256 and length of the staged file (a worker thread); (b"", 0)
        if no part was ever written to it."""
        try:
            return await asyncio.to_thread(file_digest, self.path(upload_id))
        except FileNotFoundError:
            return b"", 0

    def busy(self, upload_id: str) -> bool:
        state = self._uploads.get(upload_id)
        return state is not None and (state.writing > 0 or (state.finishing is not None and not state.finishing.done()))

    async def remove(self, upload_ids: list[str]) -> None:
        """Delete the staged files of ``upload_ids`` and forget them."""
        for upload_id in upload_ids:
            self._uploads.pop(upload_id, None)
        if upload_ids:
            await asyncio.to_thread(self._unlink, [self.path(i) for i in upload_ids])

    def drop_file(self, upload_id: str) -> Awaitable[None]:
        """Delete a finished upload's staged file; its state stays, so late
        parts are told it is finished."""
        return asyncio.to_thread(self._unlink, [self.path(upload_id)])

    @staticmethod
    def _unlink(paths: list[Path]) -> None:
        for path in paths:
            path.unlink(missing_ok=True)

    def staged_ids(self) -> list[str]:
        """The ids of the staged files on disk (blocking)."""
        return [p.name[: -len(".part")] for p in self.root.glob("*.part")]
