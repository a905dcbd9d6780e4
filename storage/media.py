"""Media metadata.  The bytes live in the blob store, content-addressed by
SHA-256 (storage/blobs.py); a row here is what makes a file reachable by key.

A row and its bytes are kept consistent by one lock per content (a
PostgreSQL advisory lock on the digest, ``lock_content``): recording an upload
takes it shared and checks, inside that transaction, that the bytes are in
the store; ``admin media gc`` and ``admin media delete`` take it exclusive and
check, inside theirs, that no row names the bytes before removing them.  So a
row is never committed for bytes that are gone, and bytes are never removed
under a row being recorded, whichever comes first (docs/operations.md, "Media
lifecycle").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from .blobs import BlobStore
from .db import Database, Transaction
from .errors import BlobMissing


@dataclass(frozen=True, slots=True)
class MediaRow:
    key: str
    owner_id: int
    extension: str
    size: int
    sha256: bytes
    created_at: datetime


_COLUMNS = "key, owner_id, extension, size, sha256, created_at"


def _media(row: asyncpg.Record | None) -> MediaRow | None:
    return MediaRow(**dict(row)) if row else None


async def get_media(db: Database, key: str) -> MediaRow | None:
    row = await db.fetchrow("media.get", f"SELECT {_COLUMNS} FROM media WHERE key = $1", key)
    return _media(row)


async def owned_by(db: Database, key: str, user_id: int) -> MediaRow | None:
    """The media ``key`` if ``user_id`` uploaded it, else None (for rules like
    "a profile photo must be the caller's own upload")."""
    row = await db.fetchrow(
        "media.owned_by", f"SELECT {_COLUMNS} FROM media WHERE key = $1 AND owner_id = $2", key, user_id
    )
    return _media(row)


#: Advisory-lock class of a content's lock (the two-key form: its own key
#: space, apart from the single-key locks of migrations, friends and dialogs).
CONTENT_LOCK = 0x6D656469  # "medi"


async def lock_content(tx: Transaction, sha256: bytes, *, exclusive: bool) -> None:
    """Hold the lock of the content ``sha256`` until ``tx`` ends: shared to
    record a row for it, exclusive to remove its bytes.  Two digests may share
    a lock (32 bits of the digest): that only serialises them."""
    take = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    await tx.execute("media.lock_content", f"SELECT {take}($1, $2)", CONTENT_LOCK,
                     int.from_bytes(sha256[:4], "big", signed=True))


async def record_media(
    tx: Transaction, blobs: BlobStore, *, key: str, owner_id: int, extension: str, size: int, sha256: bytes
) -> MediaRow | None:
    """Record an upload whose bytes were put in ``blobs``; None if ``key`` is
    taken.  Under the content's shared lock, the bytes are checked to be there
    (gc may have removed them since the put, which was a no-op if they were
    stored already): ``BlobMissing`` if not, for the caller to put them again
    and retry.  Content an operator removed is recorded quarantined."""
    await lock_content(tx, sha256, exclusive=False)
    if await blobs.size(sha256) != size:
        raise BlobMissing(sha256)
    row = await tx.fetchrow(
        "media.insert",
        f"INSERT INTO media (key, owner_id, extension, size, sha256, quarantined_at)"
        f" SELECT $1, $2, $3, $4, $5, (SELECT now() FROM media_quarantine q WHERE q.sha256 = $5)"
        f" ON CONFLICT (key) DO NOTHING RETURNING {_COLUMNS}",
        key,
        owner_id,
        extension,
        size,
        sha256,
    )
    return _media(row)


async def visible_to(db: Database, key: str, user_id: int) -> MediaRow | None:
    """The media ``key`` if ``user_id`` may download it, else None.

    Allowed: the uploader; a member of a dialog where a live (not deleted)
    message carries it; anyone, if it is a user's profile photo or a dialog's
    photo (those are shown beside public names).  Nobody, if it is quarantined."""
    row = await db.fetchrow(
        "media.visible_to",
        f"SELECT {_COLUMNS} FROM media m WHERE m.key = $1 AND m.quarantined_at IS NULL AND ("
        " m.owner_id = $2"
        " OR EXISTS (SELECT 1 FROM users u WHERE u.photo_key = m.key)"
        " OR EXISTS (SELECT 1 FROM dialogs d WHERE d.photo_key = m.key)"
        " OR EXISTS (SELECT 1 FROM message_media mm"
        "   JOIN messages msg ON msg.dialog_id = mm.dialog_id AND msg.id = mm.message_id AND msg.deleted_at IS NULL"
        "   JOIN dialog_members dm ON dm.dialog_id = mm.dialog_id AND dm.user_id = $2"
        "   WHERE mm.media_key = m.key))",
        key,
        user_id,
    )
    return _media(row)
