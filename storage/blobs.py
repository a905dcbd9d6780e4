"""Blob stores: where the bytes of media files live, addressed by content.

A blob is named by the SHA-256 of its bytes, so the same bytes uploaded twice
are stored once.  The database rows of storage/media.py make a blob reachable
by key; a blob no row names is garbage that ``admin media gc`` removes.

Every store keeps one rule: a blob is either absent or whole.  Writers put the
bytes under a temporary name and publish them under the digest in one atomic
step (a rename on disk, a single PUT or a completed multipart upload in an
object store), and the row that makes them reachable is inserted only after the
put returns.  A crash at any point therefore leaves at worst bytes that no row
names, never a row pointing at nothing.

``BlobStore`` is the interface; ``LocalBlobs`` keeps blobs on the node's disk
(the embedded default).  Every blocking call runs in a worker thread: hashing
and writing megabytes must not stall the event loop.  Reads are the exception
when their bytes are in the page cache (``RWF_NOWAIT``): a hop to a thread and
back costs about 100 µs of CPU, more than copying a cached megabyte, and most
downloads are of files read a moment before.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, NamedTuple, Protocol

from .errors import BlobMissing

#: Read size when hashing or copying a file: large enough to be cheap per
#: call, small enough that memory does not grow with the file.
CHUNK = 1024 * 1024

#: ``preadv`` that fails instead of waiting for the disk (Linux); 0 elsewhere.
NOWAIT = getattr(os, "RWF_NOWAIT", 0)


class StoredBlob(NamedTuple):
    """One blob as ``walk`` finds it.  ``modified``: when its bytes were
    written, which is how ``admin media gc`` tells a blob an upload has just
    put (and is about to record) from one left by a crash long ago."""

    sha256: bytes
    size: int
    modified: datetime


class BlobStore(Protocol):
    """Content-addressed bytes.  Implementations: ``LocalBlobs`` (this module)
    and ``S3Blobs`` (storage/blobs_s3.py)."""

    #: "local" or "s3": what the start-up log and ``admin media`` report.
    kind: str

    async def put_bytes(self, data: bytes) -> bytes:
        """Store ``data`` (once per content) and return its SHA-256."""
        ...

    async def put_file(self, path: Path, sha256: bytes, size: int) -> None:
        """Store the file at ``path``, whose digest and size the caller has
        computed, under ``sha256``.  Idempotent: a blob already stored with
        that digest is kept.  ``path`` is left for the caller to remove, and
        must not be written again (a store may keep that very file)."""
        ...

    async def size(self, sha256: bytes) -> int | None:
        """The stored size of ``sha256``, or None if it is not stored."""
        ...

    async def read(self, sha256: bytes) -> bytes:
        """The whole blob; ``BlobMissing`` if it is not stored."""
        ...

    async def read_range_into(self, sha256: bytes, offset: int, into: memoryview) -> int:
        """Read up to ``len(into)`` bytes from ``offset`` into ``into`` and
        return how many (fewer at the end of the blob, none past it);
        ``BlobMissing`` if it is not stored.  Into a buffer the caller owns,
        so a range goes from the store into the frame that carries it with
        no copy between (protocol.frames.PreparedResponse)."""
        ...

    async def delete(self, sha256: bytes) -> bool:
        """Remove the blob; False if it was not stored."""
        ...

    def walk(self) -> AsyncIterator[StoredBlob]:
        """Every stored blob, in no particular order."""
        ...

    async def check(self) -> str:
        """Whether the store can be used (reachable, the bucket exists, the
        credentials are accepted): a description for the start-up log, or
        ``BlobStoreUnavailable`` saying what is wrong."""
        ...

    async def close(self) -> None:
        """Release connections or handles the store holds."""
        ...


def file_digest(path: Path) -> tuple[bytes, int]:
    """SHA-256 and size of the file at ``path``, read in chunks (blocking)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.digest(), size


def _read_into(fd: int, offset: int, into: memoryview, flags: int) -> tuple[int, bool]:
    """Fill ``into`` from ``offset``: (bytes read, done).  Done is False only
    when ``flags`` has ``RWF_NOWAIT`` and the rest is not in the page cache
    (or the file system cannot say): the caller reads it in a thread."""
    got = 0
    while got < len(into):
        try:
            n = os.preadv(fd, [into[got:]], offset + got, flags)
        except OSError as exc:
            if flags and exc.errno in (errno.EAGAIN, errno.EOPNOTSUPP, errno.EINVAL):
                return got, False
            raise
        if not n:
            break  # the end of the file
        got += n
    return got, True


class LocalBlobs:
    """Blobs on local disk at ``<root>/ab/cd/<sha256 hex>``; the two-level
    fan-out keeps directories small.  A write goes to a temporary file in the
    target directory, is fsynced, renamed into place with ``os.replace``, and
    the directory fsynced so the rename itself survives a crash."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: bytes) -> Path:
        digest = sha256.hex()
        return self.root / digest[:2] / digest[2:4] / digest

    async def put_bytes(self, data: bytes) -> bytes:
        return await asyncio.to_thread(self._put_bytes, data)

    async def put_file(self, path: Path, sha256: bytes, size: int) -> None:
        await asyncio.to_thread(self._put_file, path, sha256, size)

    async def size(self, sha256: bytes) -> int | None:
        try:
            return (await asyncio.to_thread(self.path_for(sha256).stat)).st_size
        except FileNotFoundError:
            return None

    async def read(self, sha256: bytes) -> bytes:
        try:
            return await asyncio.to_thread(self.path_for(sha256).read_bytes)
        except FileNotFoundError:
            raise BlobMissing(sha256) from None

    async def read_range_into(self, sha256: bytes, offset: int, into: memoryview) -> int:
        fd = self._open(sha256)  # a lookup of a cached directory entry, not a wait for the disk
        try:
            got, done = _read_into(fd, offset, into, NOWAIT) if NOWAIT else (0, False)
            if not done:  # some bytes must come from the disk: wait for them in a thread
                more, _ = await asyncio.to_thread(_read_into, fd, offset + got, into[got:], 0)
                got += more
            return got
        finally:
            os.close(fd)

    def _open(self, sha256: bytes) -> int:
        try:
            return os.open(self.path_for(sha256), os.O_RDONLY)
        except FileNotFoundError:
            raise BlobMissing(sha256) from None

    async def delete(self, sha256: bytes) -> bool:
        return await asyncio.to_thread(self._delete, sha256)

    async def walk(self) -> AsyncIterator[StoredBlob]:
        found = await asyncio.to_thread(self._list)
        for item in found:
            yield item

    async def check(self) -> str:
        return f"local disk in {self.root}"

    async def close(self) -> None:
        return None

    def _put_bytes(self, data: bytes) -> bytes:
        sha256 = hashlib.sha256(data).digest()
        path = self.path_for(sha256)
        if self._stored(path, len(data)):
            return sha256
        self._publish(path, lambda f: f.write(data))
        return sha256

    def _put_file(self, src: Path, sha256: bytes, size: int) -> None:
        path = self.path_for(sha256)
        if self._stored(path, size) or self._link(src, path):
            return
        with open(src, "rb") as source:
            self._publish(path, lambda f: shutil.copyfileobj(source, f, CHUNK))

    @staticmethod
    def _link(src: Path, path: Path) -> bool:
        """Publish ``src`` itself under ``path`` by a hard link (fsynced,
        then renamed into place like a copy): a file of gigabytes staged on
        the same file system is stored without being written twice.  False
        where links cannot be made (another file system): then it is copied."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".upload-{secrets.token_hex(8)}.tmp"
        try:
            os.link(src, tmp)
        except OSError:
            return False
        try:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)
        return True

    @staticmethod
    def _stored(path: Path, size: int) -> bool:
        try:
            return path.stat().st_size == size  # same name, same length: same bytes
        except FileNotFoundError:
            return False

    @staticmethod
    def _publish(path: Path, write: Callable[[BinaryIO], object]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        fsync_dir(path.parent)



    def _delete(self, sha256: bytes) -> bool:
        path = self.path_for(sha256)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        fsync_dir(path.parent)
        return True

    def _list(self) -> list[StoredBlob]:
        found: list[StoredBlob] = []
        if not self.root.is_dir():
            return found
        for first in self.root.iterdir():
            if len(first.name) != 2 or not first.is_dir():
                continue
            for second in first.iterdir():
                if not second.is_dir():
                    continue
                for entry in second.iterdir():
                    try:
                        digest = bytes.fromhex(entry.name)
                    except ValueError:
                        continue  # a temporary file of a write in progress
                    if len(digest) != 32:
                        continue
                    try:
                        st = entry.stat()
                    except FileNotFoundError:
                        continue  # removed since the directory was read
                    found.append(StoredBlob(digest, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)))
        return found


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
