"""Recording an upload: the step every upload path ends with (``Media``, and
the completion of an upload in parts), once the bytes are in the blob store.

Bytes first, row second: a crash in between leaves bytes no row names, which
``admin media gc`` finds after the grace period, never a key without bytes.
The row is recorded under the content's shared lock with the bytes checked
present (storage/media.py ``record_media``).  If gc removed them after the
put (a put of content already stored is a no-op, so an old blob gc had just
judged unreferenced is the case), the second try takes the lock first and
puts them again inside it: gc cannot remove them before the row is there, so
an upload never loses to gc twice.  Every upload path calls
``record_upload`` (``Media``, and ``UploadFinish`` in handlers/uploads.py);
none inserts rows itself.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable

from protocol.status import InternalError
from storage import media
from storage.blobs import BlobStore
from storage.db import Transaction
from storage.errors import BlobMissing

from .changes import Changes

log = logging.getLogger("sessia.media")

KEY_BYTES = 16  # 32 hex characters, like the original's keys
#: A clash of 128 random bits is not expected, only tolerated.
KEY_TRIES = 3


async def record_upload(
    changes: Changes,
    blobs: BlobStore,
    *,
    owner_id: int,
    extension: str,
    size: int,
    sha256: bytes,
    put_again: Callable[[], Awaitable[object]],
    before: Callable[[Transaction], Awaitable[object]] | None = None,
    after: Callable[[Transaction, media.MediaRow], Awaitable[object]] | None = None,
) -> media.MediaRow:
    """The new key's row for bytes already put under ``sha256``.
    ``put_again`` stores the same bytes again (from memory or the staged
    file) should they be gone by the time the row is recorded.  ``before``
    and ``after`` run in the transaction that records the row (the quota
    check before it; marking an upload in parts finished after it): what
    they raise records nothing."""
    steps = (before, after)
    try:
        return await _record(changes, blobs, owner_id, extension, size, sha256, None, steps)
    except BlobMissing:
        log.info("media %s was removed before its upload was recorded: putting it again under its lock",
                 sha256.hex())
    try:
        return await _record(changes, blobs, owner_id, extension, size, sha256, put_again, steps)
    except BlobMissing:
        log.error("media %s: the store does not keep the bytes put in it", sha256.hex())
        raise InternalError("media file could not be stored") from None


async def _record(
    changes: Changes, blobs: BlobStore, owner_id: int, extension: str, size: int, sha256: bytes,
    put_locked: Callable[[], Awaitable[object]] | None,
    steps: tuple[
        Callable[[Transaction], Awaitable[object]] | None,
        Callable[[Transaction, media.MediaRow], Awaitable[object]] | None,
    ],
) -> media.MediaRow:
    before, after = steps
    for _ in range(KEY_TRIES):
        async with changes("media.insert") as ch:
            if before is not None:
                await before(ch.db)
            if put_locked is not None:
                await media.lock_content(ch.db, sha256, exclusive=False)
                await put_locked()
            row = await media.record_media(
                ch.db, blobs, key=secrets.token_hex(KEY_BYTES), owner_id=owner_id,
                extension=extension, size=size, sha256=sha256,
            )
            if row is not None and after is not None:
                await after(ch.db, row)
        if row is not None:
            return row
    raise InternalError("could not allocate a media key")
