"""Media metadata.  The bytes live in the blob store, content-addressed by
SHA-256 (storage/blobs.py); a row here is what makes a file reachable by key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from .db import Database


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


async def insert_media(
    db: Database, *, key: str, owner_id: int, extension: str, size: int, sha256: bytes
) -> MediaRow | None:
    """Record an upload whose bytes are already on disk; None if ``key`` is taken."""
    row = await db.fetchrow(
        "media.insert",
        f"INSERT INTO media (key, owner_id, extension, size, sha256) VALUES ($1, $2, $3, $4, $5)"
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
    photo (those are shown beside public names)."""
    row = await db.fetchrow(
        "media.visible_to",
        f"SELECT {_COLUMNS} FROM media m WHERE m.key = $1 AND ("
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
