"""Media metadata.  The bytes live on disk, content-addressed by SHA-256."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

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


async def get_media(db: Database, key: str) -> MediaRow | None:
    row = await db.fetchrow("media.get", f"SELECT {_COLUMNS} FROM media WHERE key = $1", key)
    return MediaRow(**dict(row)) if row else None
