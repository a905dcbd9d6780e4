"""Uploads in parts: which parts of which upload a node has staged, and the
per-owner budget (bytes and unfinished uploads) that opening one spends.

The bytes themselves are in a file on the disk of the node that opened the
upload (``node``); these rows are what survives a restart of that node, so a
client resumes from the parts recorded here.  A part is recorded only after
its bytes were written, so a recorded part is always in the file.

Quota: an owner's bytes are the sizes of their media rows plus those of their
unfinished uploads that have not expired.  Both opening an upload and storing
a file in one frame check it under the owner's advisory lock, so two of them
at once cannot both fit in the room that is left for one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from .db import Database
from .errors import QuotaExceeded, TooManyUploads


@dataclass(frozen=True, slots=True)
class UploadRow:
    id: str
    owner_id: int
    node: str
    extension: str
    size: int
    part_size: int
    sha256: bytes | None
    media_key: str | None
    expires_at: datetime

    @property
    def parts(self) -> int:
        return -(-self.size // self.part_size)

    def part_length(self, part: int) -> int:
        """How many bytes part ``part`` holds: ``part_size``, less for the last."""
        return min(self.part_size, self.size - part * self.part_size)


_COLUMNS = "id, owner_id, node, extension, size, part_size, sha256, media_key, expires_at"

# A fixed seed keeps these advisory-lock keys apart from other uses (friends', dialogs').
_OWNER_LOCK_SEED = 0x5E55ED1A


def _upload(row: asyncpg.Record | None) -> UploadRow | None:
    return UploadRow(**dict(row)) if row else None


async def _lock_owner(db: Database, owner_id: int) -> None:
    """The owner's media lock, held until the caller's transaction ends
    (taking it again in the same transaction is free)."""
    await db.execute(
        "uploads.lock_owner",
        "SELECT pg_advisory_xact_lock(hashtextextended('media:' || $1::bigint::text, $2))",
        owner_id,
        _OWNER_LOCK_SEED,
    )


async def ensure_room(db: Database, owner_id: int, size: int, quota: int) -> None:
    """Inside the caller's transaction: take the owner's media lock (held until
    it ends) and raise ``QuotaExceeded`` if ``size`` more bytes do not fit in
    ``quota`` (0: no quota, and no lock)."""
    if not quota:
        return
    await _lock_owner(db, owner_id)
    used = await db.fetchval(
        "uploads.used",
        "SELECT (SELECT coalesce(sum(size), 0) FROM media WHERE owner_id = $1)"
        " + (SELECT coalesce(sum(size), 0) FROM uploads"
        "    WHERE owner_id = $1 AND media_key IS NULL AND expires_at > now())",
        owner_id,
    )
    if used + size > quota:
        raise QuotaExceeded(int(used), size, quota)


async def open_upload(
    db: Database,
    *,
    upload_id: str,
    owner_id: int,
    node: str,
    extension: str,
    size: int,
    part_size: int,
    sha256: bytes | None,
    ttl: float,
    quota: int,
    max_open: int,
) -> tuple[UploadRow, bool]:
    """Inside the caller's transaction: the owner's unfinished upload of the
    same content on this node (when ``sha256`` is given), or a new one.
    Returns the row and whether it was resumed.  Raises ``TooManyUploads`` or
    ``QuotaExceeded`` (a resumed upload is counted already)."""
    await _lock_owner(db, owner_id)
    if sha256 is not None:
        row = await db.fetchrow(
            "uploads.same_content",
            f"SELECT {_COLUMNS} FROM uploads WHERE owner_id = $1 AND sha256 = $2 AND size = $3"
            " AND extension = $4 AND node = $5 AND part_size = $6 AND media_key IS NULL AND expires_at > now()"
            " ORDER BY created_at LIMIT 1",
            owner_id, sha256, size, extension, node, part_size,
        )
        if row is not None:
            return UploadRow(**dict(row)), True
    held = await db.fetchval(
        "uploads.open_count",
        "SELECT count(*) FROM uploads WHERE owner_id = $1 AND media_key IS NULL AND expires_at > now()",
        owner_id,
    )
    if held >= max_open:
        raise TooManyUploads(max_open)
    await ensure_room(db, owner_id, size, quota)
    row = await db.fetchrow(
        "uploads.insert",
        "INSERT INTO uploads (id, owner_id, node, extension, size, part_size, sha256, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8))"
        f" RETURNING {_COLUMNS}",
        upload_id, owner_id, node, extension, size, part_size, sha256, ttl,
    )
    assert row is not None
    return UploadRow(**dict(row)), False


async def get_upload(db: Database, upload_id: str, owner_id: int) -> UploadRow | None:
    """``owner_id``'s upload ``upload_id`` if it has not expired (finished or not)."""
    row = await db.fetchrow(
        "uploads.get",
        f"SELECT {_COLUMNS} FROM uploads WHERE id = $1 AND owner_id = $2 AND expires_at > now()",
        upload_id,
        owner_id,
    )
    return _upload(row)


async def record_parts(db: Database, upload_id: str, owner_id: int, parts: list[int]) -> bool:
    """Record that ``parts`` are in the staged file (again is a no-op).
    False if the upload is gone meanwhile (expired, finished)."""
    live = await db.fetchval(
        "uploads.record_parts",
        "WITH u AS (SELECT id FROM uploads WHERE id = $1 AND owner_id = $2 AND media_key IS NULL"
        "           AND expires_at > now()),"
        " ins AS (INSERT INTO upload_parts (upload_id, part) SELECT id, unnest($3::int[]) FROM u"
        "         ON CONFLICT DO NOTHING)"
        " SELECT count(*) FROM u",
        upload_id,
        owner_id,
        parts,
    )
    return bool(live)


async def missing_parts(db: Database, upload: UploadRow) -> list[int]:
    """The part numbers not recorded yet, in order."""
    rows = await db.fetch(
        "uploads.missing",
        "SELECT g FROM generate_series(0, $2 - 1) g"
        " WHERE NOT EXISTS (SELECT 1 FROM upload_parts p WHERE p.upload_id = $1 AND p.part = g) ORDER BY g",
        upload.id,
        upload.parts,
    )
    return [r["g"] for r in rows]


async def finished(db: Database, upload_id: str, media_key: str) -> bool:
    """Inside the transaction that records the media row: the upload became
    ``media_key`` (kept until it expires, so asking again answers the same
    key); its part rows go.  False if it expired or finished meanwhile."""
    done = await db.execute(
        "uploads.finished",
        "UPDATE uploads SET media_key = $2 WHERE id = $1 AND media_key IS NULL AND expires_at > now()",
        upload_id,
        media_key,
    )
    if done != "UPDATE 1":
        return False
    await db.execute("uploads.drop_parts", "DELETE FROM upload_parts WHERE upload_id = $1", upload_id)
    return True


async def discard(db: Database, upload_id: str) -> None:
    """Forget an upload whose bytes turned out wrong (its staged file goes too)."""
    await db.execute("uploads.discard", "DELETE FROM uploads WHERE id = $1", upload_id)


async def expire(db: Database, node: str) -> list[str]:
    """Remove this node's expired uploads (finished or not); their ids, whose
    staged files the caller removes."""
    rows = await db.fetch(
        "uploads.expire", "DELETE FROM uploads WHERE node = $1 AND expires_at <= now() RETURNING id", node
    )
    return [r["id"] for r in rows]


async def unfinished_ids(db: Database, node: str) -> set[str]:
    """This node's unfinished uploads (expired or not): every staged file
    that belongs to none of them is left over and may go."""
    rows = await db.fetch(
        "uploads.unfinished", "SELECT id FROM uploads WHERE node = $1 AND media_key IS NULL", node
    )
    return {r["id"] for r in rows}
