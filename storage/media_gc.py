"""Media lifecycle: removing keys nobody uses and bytes no key names
(``admin media gc``), and an operator's removal of one key (``admin media
delete``, a quarantine).

A key is *in use* while a live message carries it, or it is a user's or a
dialog's photo.  A key not in use whose upload is older than the grace period
is removed (its row; a message deleted for everyone has already dropped its
links).  A blob is *referenced* while a row that is not quarantined names its
digest, or it is a thumbnail (``media_thumbs``) of content such a row names.  A blob not referenced and written before the grace period is
removed: the grace leaves alone the bytes of an upload that has put them and
is about to record its row.

Order makes every crash safe: rows go first, in their own committed
transaction; bytes go after, each under the content's exclusive lock
(storage/media.py ``lock_content``) with "no row names it" checked inside that
lock.  A crash between the two leaves bytes no row names, which the next pass
finds by walking the store; a key never loses its bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .blobs import BlobStore, StoredBlob
from .db import Database, Transaction
from .media import lock_content

#: Rows per statement, blobs per reference check.
PAGE = 500

#: Not in use: no live message carries the key, and it is no user's or
#: dialog's photo.  ``m`` is the media row.
_NOT_IN_USE = """
    NOT EXISTS (SELECT 1 FROM message_media mm
                JOIN messages msg ON msg.dialog_id = mm.dialog_id AND msg.id = mm.message_id
                                 AND msg.deleted_at IS NULL
                WHERE mm.media_key = m.key)
    AND NOT EXISTS (SELECT 1 FROM users u WHERE u.photo_key = m.key)
    AND NOT EXISTS (SELECT 1 FROM dialogs d WHERE d.photo_key = m.key)"""


@dataclass(frozen=True, slots=True)
class Removable:
    """A key gc removes (or would remove): its content and size."""

    key: str
    sha256: bytes
    size: int
    created_at: datetime


@dataclass
class Collected:
    """What a gc pass removed (or, dry, would remove)."""

    keys: list[Removable] = field(default_factory=list)
    blobs: list[StoredBlob] = field(default_factory=list)

    @property
    def key_bytes(self) -> int:
        return sum(k.size for k in self.keys)

    @property
    def blob_bytes(self) -> int:
        return sum(b.size for b in self.blobs)


async def database_now(db: Database) -> datetime:
    """The database's clock: upload times are its, so the cutoff is too."""
    now: datetime = await db.fetchval("media.now", "SELECT now()")
    return now


async def unused_keys(db: Database, before: datetime) -> AsyncIterator[list[Removable]]:
    """Pages of keys not in use and uploaded before ``before``, oldest first."""
    after: tuple[datetime, str] | None = None
    while True:
        rows = await db.fetch(
            "media.unused_keys",
            f"SELECT m.key, m.sha256, m.size, m.created_at FROM media m"
            f" WHERE m.created_at < $1 AND ($2::timestamptz IS NULL OR (m.created_at, m.key) > ($2, $3))"
            f" AND {_NOT_IN_USE} ORDER BY m.created_at, m.key LIMIT $4",
            before, after[0] if after else None, after[1] if after else "", PAGE,
        )
        if not rows:
            return
        yield [Removable(**dict(r)) for r in rows]
        after = (rows[-1]["created_at"], rows[-1]["key"])


async def remove_keys(db: Database, keys: Sequence[str], before: datetime) -> list[Removable]:
    """Remove those of ``keys`` that are still not in use; returns them.

    The rows are locked first (``FOR UPDATE``; rows a send is attaching at
    this moment hold a key-share lock and are skipped), then checked again by
    a second statement, whose snapshot is taken after the locks are held: a
    link committed in between is seen, and no attachment is ever removed by
    the cascade from under a message that was just sent."""
    async with db.atomic("media.remove_keys") as tx:
        locked = await tx.fetch(
            "media.lock_keys", "SELECT key FROM media WHERE key = ANY($1::text[]) FOR UPDATE SKIP LOCKED", list(keys)
        )
        rows = await tx.fetch(
            "media.remove_keys",
            f"DELETE FROM media m WHERE m.key = ANY($1::text[]) AND m.created_at < $2 AND {_NOT_IN_USE}"
            f" RETURNING m.key, m.sha256, m.size, m.created_at",
            [r["key"] for r in locked], before,
        )
    return [Removable(**dict(r)) for r in rows]


async def referenced(db: Database, digests: Sequence[bytes], *, ignoring: Sequence[str] = ()) -> set[bytes]:
    """Which of ``digests`` a row names (quarantined rows do not count;
    neither do the keys in ``ignoring``: those a dry run would remove)."""
    rows = await db.fetch("media.referenced", _REFERENCED_SQL, list(digests), list(ignoring))
    return {r["sha256"] for r in rows}


#: A blob is named by a media row, or is the thumbnail (storage/thumbs.py) of
#: content a media row still names: thumbnails belong to the content.
_REFERENCED_SQL = """
SELECT sha256 FROM media
WHERE sha256 = ANY($1::bytea[]) AND quarantined_at IS NULL AND NOT (key = ANY($2::text[]))
UNION
SELECT t.sha256 FROM media_thumbs t
WHERE t.sha256 = ANY($1::bytea[])
  AND EXISTS (SELECT 1 FROM media m WHERE m.sha256 = t.source_sha256 AND m.quarantined_at IS NULL
                                       AND NOT (m.key = ANY($2::text[])))
"""


async def drop_orphan_thumbnails(db: Database) -> int:
    """Forget the thumbnails (and remembered refusals) of content no media row
    names any more; their blobs are then unreferenced and swept."""
    result: str = await db.execute(
        "media.drop_orphan_thumbnails",
        "DELETE FROM media_thumbs t WHERE NOT EXISTS"
        " (SELECT 1 FROM media m WHERE m.sha256 = t.source_sha256 AND m.quarantined_at IS NULL)",
    )
    return int(result.split()[-1])


async def remove_blob(db: Database, blobs: BlobStore, sha256: bytes) -> bool:
    """Remove the bytes of ``sha256`` if no row names them, decided under the
    content's exclusive lock: an upload recording a row for them waits for
    it, then finds them gone and puts them again (storage/media.py
    ``record_media``); one that recorded first is seen here.  False if a row
    names them (or they were gone)."""
    async with db.atomic("media.remove_blob") as tx:
        await lock_content(tx, sha256, exclusive=True)
        if await referenced(tx, [sha256]):
            return False
        return await blobs.delete(sha256)


async def collect(
    db: Database,
    blobs: BlobStore,
    *,
    grace: float,
    dry_run: bool,
    now: datetime | None = None,
    seen: Callable[[Removable | StoredBlob], None] | None = None,
) -> Collected:
    """One gc pass: keys first, then bytes (see the module's docstring).
    ``dry_run`` changes nothing and reports what a pass would remove now.
    ``seen`` is called with each key and blob as it goes (or would go)."""
    before = (now or await database_now(db)) - timedelta(seconds=grace)
    done = Collected()

    def note(item: Removable | StoredBlob) -> None:
        if seen is not None:
            seen(item)

    async for page in unused_keys(db, before):
        gone = page if dry_run else await remove_keys(db, [k.key for k in page], before)
        for key in gone:
            done.keys.append(key)
            note(key)
    ignoring = [k.key for k in done.keys] if dry_run else []
    if not dry_run:
        await drop_orphan_thumbnails(db)

    async def sweep(batch: list[StoredBlob]) -> None:
        named = await referenced(db, [b.sha256 for b in batch], ignoring=ignoring)
        for blob in batch:
            if blob.sha256 in named:
                continue
            if dry_run or await remove_blob(db, blobs, blob.sha256):
                done.blobs.append(blob)
                note(blob)

    batch: list[StoredBlob] = []
    async for blob in blobs.walk():
        if blob.modified >= before:
            continue  # perhaps an upload that has not recorded its row yet
        batch.append(blob)
        if len(batch) >= PAGE:
            await sweep(batch)
            batch = []
    if batch:
        await sweep(batch)
    return done


@dataclass(frozen=True, slots=True)
class Quarantined:
    """What ``quarantine`` did: the keys removed, and whether the bytes went
    (they stay while another key, not removed, names the same content)."""

    sha256: bytes
    size: int
    keys: list[str]
    bytes_removed: bool


async def quarantine(db: Database, blobs: BlobStore, key: str, *, all_copies: bool) -> Quarantined | None:
    """Remove ``key`` (with ``all_copies``, every key of the same content)
    and remember its content as quarantined: an upload of the same bytes later
    gets a key nobody can download.  The bytes go too once no other key names
    them.  None if there is no such key."""
    async with db.atomic("media.quarantine") as tx:
        row = await tx.fetchrow("media.quarantine_find", "SELECT sha256, size FROM media WHERE key = $1", key)
        if row is None:
            return None
        sha256, size = row["sha256"], row["size"]
        await lock_content(tx, sha256, exclusive=True)
        await _remember(tx, sha256, key)
        removed = await tx.fetch(
            "media.quarantine_remove",
            "DELETE FROM media WHERE key = $1 OR ($3 AND sha256 = $2) RETURNING key",
            key, sha256, all_copies,
        )
    # The rows are gone (committed) before the bytes: a crash here leaves
    # bytes no row names, which gc removes.
    gone = await remove_blob(db, blobs, sha256)
    return Quarantined(sha256, size, sorted(r["key"] for r in removed), gone)


async def _remember(tx: Transaction, sha256: bytes, key: str) -> None:
    await tx.execute(
        "media.quarantine_add",
        "INSERT INTO media_quarantine (sha256, key) VALUES ($1, $2) ON CONFLICT (sha256) DO NOTHING",
        sha256, key,
    )
