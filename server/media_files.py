"""The on-disk, content-addressed media store.

A file lives at ``<media_dir>/ab/cd/<sha256 hex>``: the same bytes uploaded
twice are stored once, and the two-level fan-out keeps directories small.

A write is atomic: the bytes go to a temporary file in the target directory,
are fsynced, then renamed into place with ``os.replace`` (and the directory is
fsynced so the rename itself survives a crash).  A reader therefore sees either
no file or the whole file, never half of one.  The database row that makes the
file reachable is inserted only after the write returns, so a crash mid-upload
leaves at worst an unreferenced file, never a row pointing at nothing.

Every blocking call runs in a worker thread (``asyncio.to_thread``): hashing and
writing 20 MiB must not stall every other connection on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from pathlib import Path


class MediaStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: bytes) -> Path:
        digest = sha256.hex()
        return self.root / digest[:2] / digest[2:4] / digest

    async def save(self, data: bytes) -> bytes:
        """Store ``data`` (once per content); returns its SHA-256 digest."""
        return await asyncio.to_thread(self._save, data)

    async def read(self, sha256: bytes) -> bytes:
        """The stored bytes; FileNotFoundError if the file is missing."""
        return await asyncio.to_thread(self.path_for(sha256).read_bytes)

    def _save(self, data: bytes) -> bytes:
        sha256 = hashlib.sha256(data).digest()
        path = self.path_for(sha256)
        try:
            if path.stat().st_size == len(data):
                return sha256  # already stored: same name, same length, same bytes
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        _fsync_dir(path.parent)
        return sha256


def _fsync_dir(path: Path) -> None:
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
