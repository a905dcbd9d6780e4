"""Thumbnails on demand: found in PostgreSQL, or made once and kept.

The first request for a thumbnail of an image makes both sizes at once (one
decoding serves both), stores them as blobs and records them
(storage/thumbs.py); every later request, for either size and through any key
of the same content, is answered from the store.  Why on first request and
not at upload: an upload's answer does not wait for a decoding (about 0.1 s
for a 12 MP photo, 2 s for the worst image the caps let through), an image
nobody previews costs nothing, and the one place that makes thumbnails serves
files however they were uploaded.

Two requests for the same missing thumbnails on one node make them once: the
second waits for the first one's task (``_making``).  On two nodes at once
they may be made twice, harmlessly: the blobs are content-addressed and the
first rows recorded stay.

An image that cannot be thumbnailed (server/imaging.py ``Refused``: over a
cap, corrupt, too slow, too big in memory) is recorded as refused with its
reason, so it is decoded once, not once per request.  A worker that crashed
is not held against the image: it may have been the machine (an
out-of-memory kill, a ``--thumb-memory-mib`` too small to start Python).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from storage import thumbs
from storage.blobs import BlobStore
from storage.db import Database
from storage.media import MediaRow
from storage.thumbs import NewThumb, ThumbRow

from .imaging import Refused
from .thumb_pool import ThumbPool

log = logging.getLogger("sessia.thumbs")

#: Images larger than this are not decoded: a 50 MP PNG of a photo is about
#: 75 MiB; a file bigger still is no picture a phone took.
MAX_SOURCE_BYTES = 96 << 20


class Thumbnails:
    def __init__(
        self, db: Database, blobs: BlobStore, changes: Callable[[str], AbstractAsyncContextManager[Any]],
        pool: ThumbPool, sides: Mapping[str, int],
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.changes = changes
        self.pool = pool
        self.sides = dict(sides)
        self._making: dict[bytes, asyncio.Task[None]] = {}
        #: sources thumbnailed, sources refused, answers read from the store
        self.made = self.refused = self.stored = 0

    async def find(self, media: MediaRow, tag: str) -> ThumbRow:
        """The thumbnail ``tag`` of ``media``, made now if it was not yet;
        ``Refused`` if the image cannot have one."""
        row = await thumbs.find(self.db, media.sha256, tag)
        if row is not None:
            self.stored += 1
        attempts = 0
        while row is None:  # again only if another request forgot them meanwhile
            if attempts == 3:
                raise RuntimeError(f"thumbnails of {media.sha256.hex()} were made and forgotten three times")
            attempts += 1
            await self._make_once(media)
            row = await thumbs.find(self.db, media.sha256, tag)
        if row.refused is not None:
            raise Refused(row.refused)
        return row

    async def forget(self, media: MediaRow) -> None:
        """The thumbnails of ``media`` are made again on the next request
        (their blob went missing)."""
        async with self.changes("thumbs.forget") as ch:
            await thumbs.forget(ch.db, media.sha256)

    async def _make_once(self, media: MediaRow) -> None:
        task = self._making.get(media.sha256)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._make(media))
            self._making[media.sha256] = task
            task.add_done_callback(lambda done: self._made(media.sha256, done))
        # Shielded: a waiter that gives up (its connection closed) does not
        # stop the making that others wait for.
        await asyncio.shield(task)

    def _made(self, sha256: bytes, task: asyncio.Task[None]) -> None:
        self._making.pop(sha256, None)
        if not task.cancelled():
            task.exception()  # retrieved here too, for when every waiter has gone

    async def _make(self, media: MediaRow) -> None:
        tags = sorted(self.sides)
        if media.size > MAX_SOURCE_BYTES:
            await self._refuse(media, tags, f"image is larger than {MAX_SOURCE_BYTES >> 20} MiB")
            return
        try:
            made = await self.pool.make(lambda: self.blobs.read(media.sha256), self.sides)
        except Refused as exc:
            if not exc.lasting:
                raise
            await self._refuse(media, tags, exc.reason)
            return
        rows = []
        for thumb in made:  # bytes first, rows second
            sha256 = await self.blobs.put_bytes(thumb.data)
            rows.append(NewThumb(thumb.tag, sha256, thumb.extension, thumb.width, thumb.height, len(thumb.data)))
        async with self.changes("thumbs.record") as ch:
            await thumbs.record(ch.db, media.sha256, rows)
        self.made += 1

    async def _refuse(self, media: MediaRow, tags: list[str], reason: str) -> None:
        log.info("no thumbnail for media %s (%s): %s", media.key, media.sha256.hex()[:12], reason)
        async with self.changes("thumbs.refuse") as ch:
            await thumbs.refuse(ch.db, media.sha256, tags, reason)
        self.refused += 1
