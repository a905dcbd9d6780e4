"""Uploads in parts, staged on this node's disk (``<data-dir>/uploads/``).

Each upload is one sparse file, ``<upload id>.part``: a part is written at
``part × part size`` with ``pwrite`` in a worker thread, so parts may arrive in
any order, several at once, and again.  A part is acknowledged once it is
durable and recorded: the parts of one upload written meanwhile share one
``fdatasync`` (unless ``--no-durable``) and one commit that records them all
(group commit: a client sending four parts at once pays for about one sync).

The file's SHA-256 is computed as it arrives: a part that continues the
hashed prefix is hashed from memory while it is written, and parts that
arrived early are read back (from the page cache) once the gap before them is
filled.  ``UploadFinish`` then only hashes what is left, usually nothing,
instead of reading the whole file again.  A part written again over hashed
bytes, or an upload resumed by a restarted node, is hashed from the file at
the finish.  PostgreSQL remembers which
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
import hashlib
import os
import secrets
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar, cast

from protocol.status import Conflict, TooManyRequests
from storage.blobs import CHUNK, file_digest, fsync_dir
from storage.uploads import UploadRow

T = TypeVar("T")

#: Part writes one upload may take beyond its number of parts, twice over: a
#: client resuming re-sends what it is not sure of, and that is all it needs.
#: This bounds the disk work one ``UploadStart`` (the rate-limited step) buys.
RESENDS = 8


#: Records the parts given (one commit); False if the upload is gone.
Record = Callable[[list[int]], Awaitable[bool]]


class _Upload:
    """What this process knows of one staged upload."""

    __slots__ = ("row", "writing", "written", "idle", "finishing", "pending", "settler", "lock", "hasher", "hashed",
                 "ahead")

    def __init__(self) -> None:
        self.row: UploadRow | None = None  # as it was when its first part here was taken
        self.writing = 0  # parts being stored now (written, synced, recorded)
        self.written = 0  # part writes since this process started
        self.idle = asyncio.Event()
        self.idle.set()
        self.finishing: asyncio.Future[object] | None = None  # done: finished
        self.pending: list[tuple[int, asyncio.Future[bool]]] = []  # written, waiting for the next sync and commit
        self.settler: asyncio.Task[None] | None = None
        # The running hash, its writes and reads of the file: one thread at a time.
        self.lock = threading.Lock()
        self.hasher: hashlib._Hash | None = hashlib.sha256()  # None: hash the file at the finish
        self.hashed = 0  # bytes of the file's start that the hasher has seen
        self.ahead: dict[int, int] = {}  # offset -> length of parts written past ``hashed``


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

    def known(self, upload_id: str, owner_id: int) -> UploadRow | None:
        """The row of an upload staged here that took a part, if ``owner_id``
        owns it: a part needs no read of the database to find its upload.
        Whether the upload may still take parts is decided by the commit that
        records them (storage.uploads.record_parts)."""
        state = self._uploads.get(upload_id)
        row = state.row if state is not None else None
        return row if row is not None and row.owner_id == owner_id else None

    async def store_part(self, row: UploadRow, part: int, data: bytes, record: Record) -> bool:
        """Write part ``part`` of the upload ``row`` (its bytes checked by the
        caller), make it durable and record it (with the parts written
        meanwhile: one sync, one commit); False if the upload is gone.
        Refused while the upload is being finished or once it is, and once it
        has taken twice its parts (plus ``RESENDS``) in writes.  The row is
        kept for ``known``."""
        upload_id, parts = row.id, row.parts
        state = self._state(upload_id)
        state.row = row
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
            await asyncio.to_thread(self._pwrite, state, self.path(upload_id), part * row.part_size, data)
            settled: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            state.pending.append((part, settled))
            if state.settler is None:
                state.settler = asyncio.create_task(self._settle(upload_id, state, record))
            return await settled
        finally:
            state.writing -= 1
            if not state.writing:
                state.idle.set()

    async def _settle(self, upload_id: str, state: _Upload, record: Record) -> None:
        """Sync and record the written parts, in batches, until none waits."""
        try:
            while state.pending:
                batch, state.pending = state.pending, []
                try:
                    if self.durable:
                        await asyncio.to_thread(_fdatasync, self.path(upload_id))
                    live = await record(sorted({part for part, _ in batch}))
                except asyncio.CancelledError:  # the server is stopping: so are the parts' requests
                    for _, settled in [*batch, *state.pending]:
                        settled.cancel()
                    raise
                except Exception as exc:
                    for _, settled in batch:
                        if not settled.done():
                            settled.set_exception(exc)
                            settled.exception()  # seen: a waiter that left does not make it "never retrieved"
                    continue
                for _, settled in batch:
                    if not settled.done():
                        settled.set_result(live)
        finally:
            state.settler = None

    def _pwrite(self, state: _Upload, path: Path, offset: int, data: bytes) -> None:
        """Write and hash, under the upload's lock: the bytes hashed are the
        bytes in the file, whatever other writes of the same part do."""
        with state.lock:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                view = memoryview(data)
                at = offset
                while view:
                    written = os.pwrite(fd, view, at)
                    view = view[written:]
                    at += written
                _hash_on(state, fd, offset, data)
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
        """SHA-256 and length of the staged file (a worker thread): the
        running hash finished with what it has not seen, or the whole file
        read again; (b"", 0) if no part was ever written to it."""
        state = self._uploads.get(upload_id)
        try:
            if state is not None and state.hasher is not None:
                return await asyncio.to_thread(_finish_hash, state, self.path(upload_id))
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


def _hash_on(state: _Upload, fd: int, offset: int, data: bytes) -> None:
    """Feed the running hash after a write of ``data`` at ``offset`` (the
    upload's lock held): hash it if it continues the hashed prefix, then the
    parts that arrived early and now continue it, read back from the file."""
    hasher = state.hasher
    if hasher is None:
        return
    if offset < state.hashed:
        state.hasher = None  # hashed bytes written again: the file is hashed at the finish
        state.ahead.clear()
        return
    if offset > state.hashed:
        state.ahead[offset] = max(len(data), state.ahead.get(offset, 0))
        return
    hasher.update(data)
    state.hashed += len(data)
    while (length := state.ahead.pop(state.hashed, None)) is not None:
        chunk = os.pread(fd, length, state.hashed)
        hasher.update(chunk)
        state.hashed += len(chunk)


def _finish_hash(state: _Upload, path: Path) -> tuple[bytes, int]:
    """The running hash continued to the end of the file, without changing
    it (a finish that fails may be tried again)."""
    with state.lock, open(path, "rb") as f:
        assert state.hasher is not None
        hasher = state.hasher.copy()
        f.seek(state.hashed)
        size = state.hashed
        while chunk := f.read(CHUNK):
            hasher.update(chunk)
            size += len(chunk)
        return hasher.digest(), size


def _fdatasync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)
