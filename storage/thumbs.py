"""Thumbnails of stored images, by the source's content (migration 0022).

A row is either a thumbnail, whose bytes are a blob of their own in the blob
store, or the reason the source cannot be thumbnailed.  The bytes are put
before the rows are recorded (as for uploads, storage/blobs.py), so a row
never names a blob that was not written."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from .db import Database


@dataclass(frozen=True, slots=True)
class ThumbRow:
    """A thumbnail (``sha256`` and the rest set, ``refused`` None) or a
    refusal (``refused`` set, the rest None)."""

    source_sha256: bytes
    tag: str
    sha256: bytes | None
    extension: str | None
    width: int | None
    height: int | None
    size: int | None
    refused: str | None


@dataclass(frozen=True, slots=True)
class NewThumb:
    tag: str
    sha256: bytes
    extension: str
    width: int
    height: int
    size: int


_COLUMNS = "source_sha256, tag, sha256, extension, width, height, size, refused"


def _thumb(row: asyncpg.Record | None) -> ThumbRow | None:
    return ThumbRow(**dict(row)) if row else None


async def find(db: Database, source_sha256: bytes, tag: str) -> ThumbRow | None:
    row = await db.fetchrow(
        "thumbs.find", f"SELECT {_COLUMNS} FROM media_thumbs WHERE source_sha256 = $1 AND tag = $2",
        source_sha256, tag,
    )
    return _thumb(row)


async def record(db: Database, source_sha256: bytes, made: list[NewThumb]) -> None:
    """Record the thumbnails made of ``source_sha256``.  Where another node
    recorded one first, its row stays (both are thumbnails of one picture)."""
    await db.execute(
        "thumbs.record",
        "INSERT INTO media_thumbs (source_sha256, tag, sha256, extension, width, height, size)"
        " SELECT $1, * FROM unnest($2::text[], $3::bytea[], $4::text[], $5::int[], $6::int[], $7::bigint[])"
        " ON CONFLICT (source_sha256, tag) DO NOTHING",
        source_sha256,
        [t.tag for t in made],
        [t.sha256 for t in made],
        [t.extension for t in made],
        [t.width for t in made],
        [t.height for t in made],
        [t.size for t in made],
    )


async def refuse(db: Database, source_sha256: bytes, tags: list[str], reason: str) -> None:
    """Remember that ``source_sha256`` cannot be thumbnailed, and why."""
    await db.execute(
        "thumbs.refuse",
        "INSERT INTO media_thumbs (source_sha256, tag, refused) SELECT $1, unnest($2::text[]), $3"
        " ON CONFLICT (source_sha256, tag) DO NOTHING",
        source_sha256, tags, reason,
    )


async def forget(db: Database, source_sha256: bytes) -> None:
    """Drop every row of ``source_sha256`` (its thumbnail blob went missing:
    the next request makes them again)."""
    await db.execute("thumbs.forget", "DELETE FROM media_thumbs WHERE source_sha256 = $1", source_sha256)
