"""The media lifecycle against the real server, the real admin command and
both blob stores (local disk, and an S3 bucket of a real SeaweedFS): gc of
unused keys and of bytes no key names, quarantine by key, and the races of gc
with an upload of the same content (docs/operations.md, "Media lifecycle")."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg
import pytest

from client_sdk import NotFound
from storage import media, media_gc
from storage.blobs import BlobStore, LocalBlobs
from storage.blobs_s3 import S3Blobs
from storage.db import Database

from .seaweedfs import ACCESS_KEY, BUCKETS, REGION, SECRET_KEY
from .support import ROOT, ServerProcess

PNG = b"\x89PNG\r\n\x1a\n"


def png(size: int) -> bytes:
    return PNG + os.urandom(size - len(PNG))


@dataclass
class Node:
    """One server with its database, its store's flags, and the same store
    opened in this process (to look at, or to race with, the bytes)."""

    server: ServerProcess
    url: str
    store_args: list[str]
    blobs: BlobStore
    db: Database
    opened: list = field(default_factory=list)

    def admin(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "server", "admin", *argv, "--database-url", self.url,
             "--data-dir", str(self.server.data_dir), *self.store_args],
            capture_output=True, text=True, cwd=ROOT, timeout=120, stdin=subprocess.DEVNULL,
        )


@pytest.fixture(params=["local", "s3"])
async def node(request, start_server, new_database, tmp_path_factory):
    url = new_database()
    data_dir = tmp_path_factory.mktemp("data")
    if request.param == "s3":
        s3 = request.getfixturevalue("s3")
        store_args = s3.args(BUCKETS[1])
        blobs: BlobStore = S3Blobs(endpoint=s3.endpoint, bucket=BUCKETS[1], region=REGION,
                                   access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    else:
        store_args = []
        blobs = LocalBlobs(data_dir / "media")
    server = start_server(*store_args, "--rate-media", "0", database_url=url, data_dir=data_dir)
    db = await Database.connect(url, min_size=1, max_size=4)
    try:
        yield Node(server, url, store_args, blobs, db)
    finally:
        await db.close()
        await blobs.close()
        server.stop()  # its connections go back to the shared PostgreSQL now, not at the end of the run
    assert not server.alarms()


async def on(node: Node, user) -> object:
    return await user(target=node.server)


def digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


async def waiting_for_content_lock(db: Database, timeout: float = 10.0) -> None:
    """Until some session waits for a content lock (storage/media.py)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        waiting = await db.fetchval(
            "test.locks",
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = $1::bigint::oid",
            media.CONTENT_LOCK,
        )
        if waiting:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("nobody waited for the content lock")


# -- gc -------------------------------------------------------------------------------------


async def test_gc_removes_unused_keys_and_their_files_and_keeps_what_is_used(node, user):
    alice, bob = await on(node, user), await on(node, user)
    dialog = await alice.create_dialog("gc", members=[bob.user_id])
    unused_data = png(1000)
    unused = await alice.upload_media(unused_data, "png")
    attached = await alice.upload_media(png(700), "png")
    await alice.send_message(dialog, "see", media=[attached])
    photo = await alice.upload_media(png(800), "png")
    await alice.change_user(image_key=photo)
    dialog_photo = await bob.upload_media(png(900), "png")
    await bob.create_dialog("with a photo", photo=dialog_photo)
    deleted_data = png(3000)
    deleted = await alice.upload_media(deleted_data, "png")
    await alice.delete_message(dialog, await alice.send_message(dialog, "oops", media=[deleted]))
    shared_data = png(500)  # two keys, one content: the unused one goes, the bytes stay
    shared_unused = await alice.upload_media(shared_data, "png")
    shared_kept = await bob.upload_media(shared_data, "png")
    await bob.send_message(dialog, "mine", media=[shared_kept])

    dry = node.admin("media", "gc", "--dry-run", "--media-grace", "0")
    assert dry.returncode == 0, dry.stderr
    listed = set(re.findall(r"^would remove key (\w+) ", dry.stdout, re.M))
    assert listed == {unused, deleted, shared_unused}
    files = set(re.findall(r"^would remove file (\w+) \(([\d,]+) bytes\)", dry.stdout, re.M))
    assert files == {(digest(unused_data).hex(), "1,000"), (digest(deleted_data).hex(), "3,000")}
    assert "would remove 3 unused key(s) (4,500 bytes as uploaded) and 2 file(s) no key names (4,000 bytes" in dry.stdout
    assert (await alice.get_media(unused)).data == unused_data  # a dry run changes nothing

    young = node.admin("media", "gc")  # the default grace: everything here is minutes old
    assert young.returncode == 0, young.stderr
    assert "removed 0 unused key(s) (0 bytes as uploaded) and 0 file(s)" in young.stdout

    done = node.admin("media", "gc", "--media-grace", "0")
    assert done.returncode == 0, done.stderr
    assert set(re.findall(r"^removed key (\w+) ", done.stdout, re.M)) == {unused, deleted, shared_unused}
    assert "removed 3 unused key(s) (4,500 bytes as uploaded) and 2 file(s) no key names (4,000 bytes" in done.stdout
    for key in (unused, deleted, shared_unused):
        with pytest.raises(NotFound):
            await alice.get_media(key)
    assert await node.blobs.size(digest(unused_data)) is None
    assert await node.blobs.size(digest(deleted_data)) is None
    for viewer in (alice, bob):
        assert (await viewer.get_media(attached)).key == attached
        assert (await viewer.get_media(photo)).key == photo
        assert (await viewer.get_media(dialog_photo)).key == dialog_photo
        assert (await viewer.get_media(shared_kept)).data == shared_data

    again = node.admin("media", "gc", "--media-grace", "0")
    assert "removed 0 unused key(s) (0 bytes as uploaded) and 0 file(s)" in again.stdout


async def test_gc_finds_bytes_that_no_row_names_after_the_grace_period(node, user):
    """Bytes put by an upload that crashed before recording its row."""
    data = png(2222)
    sha256 = await node.blobs.put_bytes(data)
    kept = node.admin("media", "gc")
    assert kept.returncode == 0, kept.stderr
    assert sha256.hex() not in kept.stdout and await node.blobs.size(sha256) == 2222
    removed = node.admin("media", "gc", "--media-grace", "0")
    assert removed.returncode == 0, removed.stderr
    assert f"removed file {sha256.hex()} (2,222 bytes)" in removed.stdout
    assert await node.blobs.size(sha256) is None


@pytest.mark.parametrize("node", ["s3"], indirect=True)  # local disk: nothing to misconfigure
async def test_gc_of_a_store_that_cannot_be_used_says_so_in_one_line(node):
    bad = [*node.store_args[:-1], "wrong-secret"]
    result = subprocess.run(
        [sys.executable, "-m", "server", "admin", "media", "gc", "--database-url", node.url, *bad],
        capture_output=True, text=True, cwd=ROOT, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: media store, S3 bucket '{BUCKETS[1]}' at {node.store_args[3]} (region {REGION}):"
        " access denied: check --s3-access-key and --s3-secret-key"
    ]
    assert "wrong-secret" not in result.stderr + result.stdout and ACCESS_KEY not in result.stderr


# -- quarantine -------------------------------------------------------------------------------


async def test_delete_takes_a_key_down_and_keeps_its_content_quarantined(node, user):
    alice, bob = await on(node, user), await on(node, user)
    dialog = await alice.create_dialog("q", members=[bob.user_id])
    data = png(1234)
    key = await alice.upload_media(data, "png")
    await alice.send_message(dialog, "bad file", media=[key])
    assert (await bob.get_media(key)).data == data

    result = node.admin("media", "delete", key)
    assert result.returncode == 0, result.stderr
    assert f"removed key(s) {key}; content {digest(data).hex()} is quarantined" in result.stdout
    assert "file removed (1,234 bytes)" in result.stdout
    for viewer in (alice, bob):
        with pytest.raises(NotFound):
            await viewer.get_media(key)
    assert await node.blobs.size(digest(data)) is None
    history = await bob.messages(dialog, take=10, skip=0)
    assert [m.media for m in history if m.content == "bad file"] == [()]

    # The same bytes again: accepted (the uploader learns nothing), never served.
    again = await bob.upload_media(data, "png")
    with pytest.raises(NotFound):
        await bob.get_media(again)
    await bob.send_message(dialog, "try again", media=[again])
    with pytest.raises(NotFound):
        await alice.get_media(again)
    # gc takes its bytes away even though a live message carries the key.
    gc = node.admin("media", "gc", "--media-grace", "0")
    assert f"removed file {digest(data).hex()}" in gc.stdout
    assert await node.blobs.size(digest(data)) is None


async def test_delete_keeps_the_bytes_another_key_holds_unless_all_copies(node, user):
    alice, bob = await on(node, user), await on(node, user)
    data = png(4321)
    first = await alice.upload_media(data, "png")
    second = await bob.upload_media(data, "png")
    third = await bob.upload_media(data, "png")
    result = node.admin("media", "delete", first)
    assert result.returncode == 0, result.stderr
    assert "file kept: another key names the same content" in result.stdout
    with pytest.raises(NotFound):
        await alice.get_media(first)
    assert (await bob.get_media(second)).data == data  # uploaded before the quarantine
    assert await node.blobs.size(digest(data)) == 4321

    result = node.admin("media", "delete", second, "--all-copies")
    assert result.returncode == 0, result.stderr
    assert f"removed key(s) {', '.join(sorted([second, third]))};" in result.stdout
    assert "file removed (4,321 bytes)" in result.stdout
    for key in (second, third):
        with pytest.raises(NotFound):
            await bob.get_media(key)
    assert await node.blobs.size(digest(data)) is None

    missing = node.admin("media", "delete", "f" * 32)
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"error: no media with key '{'f' * 32}'"


# -- gc racing an upload of the same content ------------------------------------------------


async def test_gc_removing_bytes_an_upload_found_already_stored(node, user):
    """gc has judged the bytes unreferenced and holds their lock; an upload of
    the same content finds them stored (its put is a no-op) and waits to
    record its row; gc removes them; the upload finds them gone, puts them
    again, and its key downloads."""
    alice = await on(node, user)
    data = png(5000)
    sha256 = await node.blobs.put_bytes(data)  # bytes no row names (an upload that crashed)
    since = len(node.server.log)
    async with node.db.atomic("test.gc") as tx:
        await media.lock_content(tx, sha256, exclusive=True)  # what remove_blob does...
        assert not await media_gc.referenced(tx, [sha256])
        upload = asyncio.create_task(alice.upload_media(data, "png"))
        await waiting_for_content_lock(node.db)
        assert await node.blobs.delete(sha256)  # ...then this, under the lock
    key = await asyncio.wait_for(upload, 30)
    assert (await alice.get_media(key)).data == data
    assert await node.blobs.size(sha256) == 5000
    assert any("putting it again" in line for line in node.server.log[since:])


async def test_gc_waiting_for_an_upload_that_is_recording_keeps_the_bytes(node, user):
    """The other order: the upload holds the lock (its row not yet
    committed); gc waits, then sees the row and keeps the bytes."""
    alice = await on(node, user)
    data = png(6000)
    sha256 = await node.blobs.put_bytes(data)
    async with node.db.atomic("test.upload") as tx:
        row = await media.record_media(tx, node.blobs, key=os.urandom(16).hex(), owner_id=alice.user_id,
                                       extension="png", size=len(data), sha256=sha256)
        assert row is not None
        gc = asyncio.create_task(media_gc.remove_blob(node.db, node.blobs, sha256))
        await waiting_for_content_lock(node.db)
    assert await asyncio.wait_for(gc, 30) is False
    assert (await alice.get_media(row.key)).data == data


async def test_gc_passes_during_uploads_of_the_same_content_never_leave_a_key_without_bytes(node, user):
    """Uploads of one content while gc passes run with nothing young: every
    key either downloads its bytes or was itself removed (404), never a key
    whose bytes are gone; every row left names bytes that are there."""
    alice = await on(node, user)
    data = png(20_000)
    stop = asyncio.Event()

    async def passes() -> int:
        count = 0
        while not stop.is_set():
            now = await media_gc.database_now(node.db) + timedelta(minutes=1)
            await media_gc.collect(node.db, node.blobs, grace=0, dry_run=False, now=now)
            count += 1
        return count

    gc = asyncio.create_task(passes())
    keys = []
    try:
        for _ in range(30):
            keys += await asyncio.gather(*(alice.upload_media(data, "png") for _ in range(3)))
    finally:
        stop.set()
        passed = await gc
    assert passed >= 2
    served = 0
    for key in keys:
        try:
            assert (await alice.get_media(key)).data == data
            served += 1
        except NotFound:
            pass
    rows = await node.db.fetch("test.rows", "SELECT key, sha256, size FROM media")
    for row in rows:
        assert await node.blobs.size(row["sha256"]) == row["size"]
    assert served == len(rows)


# -- gc racing a message that attaches the key ---------------------------------------------------


async def test_a_key_removed_while_a_message_attaches_it_is_answered_as_missing(server, user):
    """The send checks the key, then waits on the row gc holds; gc removes
    it: the send is answered "not found" (tried again, its check sees the
    key gone), not an error, and no message carries a key without a row."""
    alice, bob = await user(), await user()
    dialog = await alice.create_dialog("race", members=[bob.user_id])
    key = await alice.upload_media(png(300), "png")
    url = server.args[server.args.index("--database-url") + 1]
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute("SELECT key FROM media WHERE key = $1 FOR UPDATE", key)
            send = asyncio.create_task(alice.send_message(dialog, "with it", media=[key]))
            for _ in range(200):
                if await conn.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'tuple'"
                                       " OR (NOT granted AND locktype = 'transactionid')"):
                    break
                await asyncio.sleep(0.02)
            await conn.execute("DELETE FROM media WHERE key = $1", key)
        with pytest.raises(NotFound, match="not found among your uploads"):
            await asyncio.wait_for(send, 30)
    finally:
        await conn.close()
    assert [m.content for m in await bob.messages(dialog, take=10, skip=0)] == []
    assert not server.alarms()


def picture(color: tuple[int, int, int]) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (400, 300), color).save(out, "PNG")
    return out.getvalue()


async def test_gc_keeps_the_thumbnails_of_content_in_use_and_removes_the_others(node, user):
    alice, bob = await on(node, user), await on(node, user)
    dialog = await alice.create_dialog("thumbs", members=[bob.user_id])
    kept_key = await alice.upload_media(picture((200, 10, 10)), "png")
    await alice.send_message(dialog, "kept", media=[kept_key])
    gone_key = await alice.upload_media(picture((10, 10, 200)), "png")
    kept_thumb = await bob.get_thumbnail(kept_key, "s")
    gone_thumb = await alice.get_thumbnail(gone_key, "s")
    thumbs = {digest(kept_thumb.data), digest(gone_thumb.data)}
    assert len(thumbs) == 2
    assert {d for d in thumbs if await node.blobs.size(d) is not None} == thumbs

    dry = node.admin("media", "gc", "--dry-run", "--media-grace", "0")
    assert dry.returncode == 0, dry.stderr
    assert set(re.findall(r"^would remove file (\w+) ", dry.stdout, re.M)) >= {digest(gone_thumb.data).hex()}
    assert digest(kept_thumb.data).hex() not in dry.stdout

    done = node.admin("media", "gc", "--media-grace", "0")
    assert done.returncode == 0, done.stderr
    assert await node.blobs.size(digest(gone_thumb.data)) is None
    assert await node.blobs.size(digest(kept_thumb.data)) is not None
    assert (await bob.get_thumbnail(kept_key, "s")).data == kept_thumb.data
    left = await node.db.fetchval("test.thumbs", "SELECT count(*) FROM media_thumbs")
    assert left == 2  # both sizes of the kept content; the removed content's are forgotten
