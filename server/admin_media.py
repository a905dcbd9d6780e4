"""``python -m server admin media gc|delete``: the media lifecycle for an
operator (storage/media_gc.py does the work; docs/operations.md, "Media
lifecycle", says what is removed when).  The blob store is the one the
server's settings name, so gc sees the same bytes the servers serve."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC

from storage import media_gc
from storage.blobs import BlobStore, StoredBlob
from storage.db import Database
from storage.errors import BlobStoreUnavailable

from .blob_stores import make_blob_store
from .config import Config


class MediaCommandError(Exception):
    """The command could not run (no usable store, no such key): one line."""


@contextlib.asynccontextmanager
async def blob_store(config: Config) -> AsyncIterator[BlobStore]:
    try:
        blobs = make_blob_store(config)
    except ValueError as exc:
        raise MediaCommandError(str(exc)) from None
    try:
        await blobs.check()
        yield blobs
    except BlobStoreUnavailable as exc:
        raise MediaCommandError(f"media store, {config.media_description()}: {exc.reason}") from None
    finally:
        await blobs.close()


def _bytes(n: int) -> str:
    return f"{n:,} bytes"


def _line(item: media_gc.Removable | StoredBlob, verb: str) -> str:
    if isinstance(item, media_gc.Removable):
        uploaded = item.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return f"{verb} key {item.key} ({_bytes(item.size)}, uploaded {uploaded}, content {item.sha256.hex()[:16]})"
    return f"{verb} file {item.sha256.hex()} ({_bytes(item.size)})"


async def gc(db: Database, config: Config, *, dry_run: bool) -> int:
    verb = "would remove" if dry_run else "removed"
    async with blob_store(config) as blobs:
        done = await media_gc.collect(
            db, blobs, grace=config.media_grace, dry_run=dry_run, seen=lambda item: print(_line(item, verb)),
        )
    hours = config.media_grace / 3600
    print(f"{verb} {len(done.keys)} unused key(s) ({_bytes(done.key_bytes)} as uploaded) and"
          f" {len(done.blobs)} file(s) no key names ({_bytes(done.blob_bytes)} freed in {config.media_description()});"
          f" grace {hours:g} h")
    return 0


async def delete(db: Database, config: Config, key: str, *, all_copies: bool) -> int:
    async with blob_store(config) as blobs:
        done = await media_gc.quarantine(db, blobs, key, all_copies=all_copies)
    if done is None:
        raise MediaCommandError(f"no media with key {key!r}")
    print(f"removed key(s) {', '.join(done.keys)}; content {done.sha256.hex()} is quarantined"
          " (an upload of the same bytes gets a key nobody can download)")
    if done.bytes_removed:
        print(f"file removed ({_bytes(done.size)})")
    else:
        print("file kept: another key names the same content (--all-copies removes every key of it)")
    return 0
