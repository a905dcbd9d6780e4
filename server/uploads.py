"""Recording an upload: the step every upload path ends with (``Media``, and
the completion of an upload in parts), once the bytes are in the blob store.

Bytes first, row second: a crash in between leaves bytes no row names, which
``admin media gc`` finds after the grace period, never a key without bytes.
The row is recorded under the content's shared lock with the bytes checked
present (storage/media.py ``record_media``); if gc removed them after the put
(a put of content already stored is a no-op, so an old blob gc had just
judged unreferenced is the case), they are put again and the row recorded
then.  Every upload path calls ``record_upload``; none inserts rows itself.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable

from protocol.status import InternalError
from storage import media
from storage.blobs import BlobStore
from storage.errors import BlobMissing

from .changes import Changes

log = logging.getLogger("sessia.media")

KEY_BYTES = 16  # 32 hex characters, like the original's keys
#: A clash of 128 random bits is not expected, only tolerated.
KEY_TRIES = 3
#: Puts again when gc removed the bytes in between: twice in a row would take
#: gc passes closer together than a put; more means the store loses writes.
PUT_TRIES = 3


async def record_upload(
    changes: Changes,
    blobs: BlobStore,
    *,
    owner_id: int,
    extension: str,
    size: int,
    sha256: bytes,
    put_again: Callable[[], Awaitable[object]],
) -> media.MediaRow:
    """The new key's row for bytes already put under ``sha256``.
    ``put_again`` stores the same bytes again (from memory or the staged
    file) should they be gone by the time the row is recorded."""
    for attempt in range(PUT_TRIES):
        try:
            for _ in range(KEY_TRIES):
                async with changes("media.insert") as ch:
                    row = await media.record_media(
                        ch.db, blobs, key=secrets.token_hex(KEY_BYTES), owner_id=owner_id,
                        extension=extension, size=size, sha256=sha256,
                    )
                if row is not None:
                    return row
            raise InternalError("could not allocate a media key")
        except BlobMissing:
            log.info("media %s was removed before its upload was recorded: putting it again (try %d)",
                     sha256.hex(), attempt + 1)
            await put_again()
    log.error("media %s: the store does not keep the bytes put in it", sha256.hex())
    raise InternalError("media file could not be stored")
