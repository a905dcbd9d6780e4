"""Uploads in parts and downloads by range, end to end on the real server:
parts in any order and at once, resume after a dropped connection and after a
kill -9 of the node, the checks on every part, racing finishes, the quota
under racing starts, expiry, and every edge of a range."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
from pathlib import Path

import asyncpg
import pytest

from client_sdk import Codec, ConnectionClosed, NotFound, RangeNotSatisfiable, TooLarge
from client_sdk.errors import ProtocolError

from .support import database_url, refused

PART = 64 * 1024  # the part size of the servers here: small parts, small test files
PNG = b"\x89PNG\r\n\x1a\n"
NO_UPLOAD = "upload not found (unknown, expired, or not yours)"


@pytest.fixture(scope="module")
def parts_server(start_server):
    """A server with 64 KiB parts, a 1 MiB whole-file limit, a 256 KiB inline
    limit and no upload rate."""
    return start_server(
        "--upload-part-size", str(PART), "--max-media-size", str(1 << 20), "--max-inline-media", str(256 * 1024),
        "--rate-media", "0",
    )


@pytest.fixture
async def on_parts(parts_server, user):
    async def make(**kw):
        return await user(target=parts_server, **kw)

    return make


def pieces(data: bytes) -> list[bytes]:
    return [data[i : i + PART] for i in range(0, len(data), PART)]


def staged(server, upload: str) -> Path:
    return server.data_dir / "uploads" / f"{upload}.part"


# -- parts -----------------------------------------------------------------------------------


async def test_parts_out_of_order_and_at_once_make_the_file(on_parts):
    alice = await on_parts()
    data = os.urandom(3 * PART + 1234)
    ticket = await alice.start_upload(len(data), "zip")
    assert (ticket.part_size, ticket.parts, ticket.resumed) == (PART, 4, False)
    parts = pieces(data)
    await alice.upload_part(ticket.upload, 3, parts[3])  # the short last part first
    await asyncio.gather(*(alice.upload_part(ticket.upload, i, parts[i]) for i in (1, 0)))
    state = await alice.upload_status(ticket.upload)
    assert (state.missing, state.key, state.size) == ((2,), None, len(data))
    await alice.upload_part(ticket.upload, 2, parts[2])
    await alice.upload_part(ticket.upload, 2, parts[2])  # again: harmless
    key = await alice.finish_upload(ticket.upload)
    assert (await alice.get_media(key)).data == data  # under the inline limit: whole, as Media's
    assert (await alice.upload_status(ticket.upload)).key == key
    assert await alice.finish_upload(ticket.upload) == key  # a lost answer is asked again


async def test_the_answers_on_the_wire(on_parts):
    alice = await on_parts()
    data = PNG + os.urandom(PART)
    answer = await alice.call("UploadStart", {"size": len(data), "extension": "png"})
    upload = answer["Upload"]
    assert answer == {"Status": {"code": 200, "message": "Upload started"}, "Upload": upload,
                      "PartSize": PART, "Parts": 2, "Resumed": False}
    answer = await alice.call("UploadPart", {"upload": upload, "part": 1, "bytes": data[PART:]})
    assert answer == {"Status": {"code": 200, "message": "Part stored"}, "Part": 1}
    answer = await alice.call("UploadStatus", {"upload": upload})
    assert answer == {"Status": {"code": 200, "message": "Upload in progress"}, "Upload": upload,
                      "Size": len(data), "PartSize": PART, "Parts": 2, "Missing": [0]}
    answer = await alice.call("UploadFinish", {"upload": upload})
    assert answer == {"Status": {"code": 409, "message": "1 of 2 parts are missing (the first is part 0):"
                                 " send them and finish again"}, "Missing": [0]}
    await alice.call("UploadPart", {"upload": upload, "part": 0, "bytes": data[:PART]})
    answer = await alice.call("UploadFinish", {"upload": upload})
    assert answer == {"Status": {"code": 200, "message": "Media uploaded"}, "Key": answer["Key"]}
    answer = await alice.call("UploadStatus", {"upload": upload})
    assert answer["Status"]["message"] == "Upload finished" and answer["Missing"] == []


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({"extension": "zip"}, 400, "size: field is required"),
        ({"size": "big", "extension": "zip"}, 400, "size: must be an integer"),
        ({"size": 0, "extension": "zip"}, 422, "size: must be at least 1"),
        ({"size": (1 << 20) + 1, "extension": "zip"}, 413, "size: larger than 1048576 bytes"),
        ({"size": 10, "extension": "exe"}, 422, "extension: 'exe' is not allowed; allowed: png,"),
        ({"size": 10, "extension": "../x"}, 422, "extension: only letters and digits"),
        ({"size": 10, "extension": "zip", "sha256": "abc"}, 422, "sha256: must be 64 hexadecimal characters"),
        ({"size": 10, "extension": "zip", "sha256": "g" * 64}, 422, "sha256: must be 64 hexadecimal characters"),
    ],
)
async def test_start_checks(on_parts, body, code, message):
    alice = await on_parts()
    answer = await alice.call("UploadStart", body)
    assert answer["Status"]["code"] == code and answer["Status"]["message"].startswith(message), answer


async def test_every_part_is_checked_against_its_upload(on_parts, parts_server):
    alice, mallory = await on_parts(), await on_parts()
    data = PNG + os.urandom(2 * PART)
    upload = (await alice.start_upload(len(data), "png")).upload
    parts = pieces(data)

    async def part(who, body):
        return (await who.call("UploadPart", {"upload": upload, **body}))["Status"]

    assert await part(alice, {"part": 3, "bytes": parts[0]}) == {
        "code": 422, "message": "part: must be below 3 (this upload has 3 parts of 65536 bytes)"}
    assert await part(alice, {"part": -1, "bytes": parts[0]}) == {"code": 422, "message": "part: must be at least 0"}
    assert await part(alice, {"part": "one", "bytes": parts[0]}) == {"code": 400, "message": "part: must be an integer"}
    assert await part(alice, {"part": 1, "bytes": parts[1][:-1]}) == {
        "code": 422, "message": f"bytes: part 1 must be {PART} bytes, not {PART - 1}"}
    assert await part(alice, {"part": 2, "bytes": parts[1]}) == {
        "code": 422, "message": f"bytes: part 2 must be 8 bytes, not {PART}"}
    assert await part(alice, {"part": 1}) == {"code": 400, "message": "bytes: field is required"}
    assert await part(alice, {"part": 1, "bytes": b""}) == {"code": 422, "message": "bytes: must not be empty"}
    assert await part(alice, {"part": 0, "bytes": b"GIF89a" + parts[0][6:]}) == {
        "code": 422, "message": "bytes are not a png image"}
    # Someone else's upload id is an unknown one.
    assert await part(mallory, {"part": 0, "bytes": parts[0]}) == {"code": 404, "message": NO_UPLOAD}
    assert (await mallory.call("UploadStatus", {"upload": upload}))["Status"] == {"code": 404, "message": NO_UPLOAD}
    assert (await mallory.call("UploadFinish", {"upload": upload}))["Status"] == {"code": 404, "message": NO_UPLOAD}
    answer = await alice.call("UploadPart", {"upload": "f" * 32, "part": 0, "bytes": parts[0]})
    assert answer["Status"] == {"code": 404, "message": NO_UPLOAD}
    # Nothing of that was written: the staged file holds no byte yet.
    assert not staged(parts_server, upload).exists()
    assert (await alice.upload_status(upload)).missing == (0, 1, 2)

    for i, piece in enumerate(parts):
        await alice.upload_part(upload, i, piece)
    key = await alice.finish_upload(upload)
    assert await part(alice, {"part": 0, "bytes": parts[0]}) == {"code": 409, "message": "upload is already finished"}
    assert (await alice.get_media(key)).data == data
    assert not staged(parts_server, upload).exists()  # the staged file went with the finish


async def test_two_finishes_at_once_give_one_key(on_parts):
    alice = await on_parts()
    data = os.urandom(3 * PART)
    upload = (await alice.start_upload(len(data), "zip")).upload
    for i, piece in enumerate(pieces(data)):
        await alice.upload_part(upload, i, piece)
    keys = await asyncio.gather(*(alice.finish_upload(upload) for _ in range(4)))
    assert len(set(keys)) == 1
    listed = await alice.call("UploadStatus", {"upload": upload})
    assert listed["Key"] == keys[0]
    assert (await alice.get_media(keys[0])).data == data


async def test_a_wrong_sha256_discards_the_upload(on_parts, parts_server):
    alice = await on_parts()
    data = os.urandom(PART + 10)
    upload = (await alice.start_upload(len(data), "zip", hashlib.sha256(b"other").digest())).upload
    for i, piece in enumerate(pieces(data)):
        await alice.upload_part(upload, i, piece)
    await refused(422, alice.finish_upload(upload), "^sha256: the bytes received do not match it")
    await refused(404, alice.upload_status(upload), re.escape(NO_UPLOAD))
    assert not staged(parts_server, upload).exists()


async def test_a_start_with_the_same_sha256_resumes_the_unfinished_upload(on_parts):
    alice, bob = await on_parts(), await on_parts()
    data = os.urandom(2 * PART)
    digest = hashlib.sha256(data).digest()
    first = await alice.start_upload(len(data), "zip", digest)
    await alice.upload_part(first.upload, 1, data[PART:])
    again = await alice.start_upload(len(data), "zip", digest)
    assert (again.upload, again.resumed) == (first.upload, True)
    assert (await alice.upload_status(again.upload)).missing == (0,)
    # Someone else's upload of the same bytes is theirs alone.
    assert (await bob.start_upload(len(data), "zip", digest)).upload != first.upload


# -- resume ------------------------------------------------------------------------------------


async def test_upload_file_resumes_after_a_dropped_connection(on_parts, tmp_path):
    alice = await on_parts()
    data = os.urandom(12 * PART + 77)
    path = tmp_path / "video.mp4"
    path.write_bytes(data)
    seen: list[tuple[int, int]] = []

    def drop_halfway(done: int, total: int) -> None:
        seen.append((done, total))
        if done >= total // 2:
            alice.transport.close()

    with pytest.raises(ConnectionClosed):
        await alice.upload_file(path, progress=drop_halfway, parallel=2)
    await alice.reconnect()
    (upload,) = alice._uploads.values()
    missing = (await alice.upload_status(upload)).missing
    assert 0 < len(missing) < 13
    seen.clear()
    key = await alice.upload_file(path, progress=lambda done, total: seen.append((done, total)))
    # Resumed, not restarted: from at least what the server had when asked (a part
    # already on its way when the connection dropped may be stored just after).
    assert seen[0][0] >= len(data) - sum(len(pieces(data)[p]) for p in missing) > 0
    assert seen[-1] == (len(data), len(data))
    assert await alice.download_file(key, tmp_path / "back.mp4") is not None
    assert (tmp_path / "back.mp4").read_bytes() == data
    assert not alice._uploads


async def test_upload_resumes_after_kill_9_of_the_node(start_server, user, tmp_path):
    server = start_server("--upload-part-size", str(PART), "--rate-media", "0")
    alice = await user(target=server)
    data = os.urandom(8 * PART)
    path = tmp_path / "notes.zip"
    path.write_bytes(data)
    upload = (await alice.start_upload(len(data), "zip", hashlib.sha256(data).digest())).upload
    parts = pieces(data)
    for i in (0, 2, 4, 6, 7):
        await alice.upload_part(upload, i, parts[i])
    server.kill()
    server.start()  # the same data dir and port
    await alice.reconnect()
    assert (await alice.upload_status(upload)).missing == (1, 3, 5)
    # A new process knows nothing of the upload: the same file's sha256 finds it.
    key = await alice.upload_file(path)
    assert (await alice.get_media_range(key, 0, 1 << 20)).data == data
    await refused(404, alice.get_media_range("0" * 32, 0), "^media not found$")
    assert server.alarms() == []


async def test_download_file_resumes_from_the_part_file(on_parts, tmp_path):
    alice = await on_parts()
    data = os.urandom(700_000)  # over the inline limit: ranges only
    key = await alice.upload_file(_write(tmp_path / "a.zip", data))
    await refused(413, alice.get_media(key), r"^the file is 700000 bytes, more than the 262144 sent whole: ask for ranges")
    target = tmp_path / "copy.zip"
    (tmp_path / "copy.zip.part").write_bytes(data[:300_000])
    seen: list[int] = []
    got = await alice.download_file(key, target, progress=lambda done, total: seen.append(done), parallel=3)
    assert (got.size, got.extension, got.path) == (len(data), "zip", target)
    assert seen[0] == 300_000 and seen[-1] == len(data)
    assert target.read_bytes() == data
    assert not (tmp_path / "copy.zip.part").exists()


async def test_json_codec_uploads_and_downloads(on_parts, tmp_path):
    alice = await on_parts(codec=Codec.JSON)
    data = os.urandom(3 * PART + 5)
    key = await alice.upload_file(_write(tmp_path / "j.bin", data), "zip")
    assert (await alice.download_file(key, tmp_path / "j.out")).size == len(data)
    assert (tmp_path / "j.out").read_bytes() == data


# -- ranges ------------------------------------------------------------------------------------


async def test_ranges_at_the_edges(on_parts, tmp_path):
    alice = await on_parts()
    data = os.urandom(300_000)
    key = await alice.upload_file(_write(tmp_path / "r.zip", data))
    size = len(data)

    async def rng(**body):
        return await alice.call("GetMedia", {"hash": key, **body})

    first = await rng(offset=0, limit=10)
    assert first == {"Status": {"code": 200, "message": "Media sent"}, "BytesBase64": data[:10], "Extension": "zip",
                     "Hash": key, "Offset": 0, "Size": size}
    assert (await rng(offset=size - 1, limit=10))["BytesBase64"] == data[-1:]
    assert (await rng(offset=size, limit=10))["BytesBase64"] == b""  # the very end: empty
    assert (await rng(offset=5, limit=0))["BytesBase64"] == b""
    assert (await rng(limit=0))["Size"] == size  # learn the size
    assert (await rng(offset=1000))["BytesBase64"] == data[1000:]  # limit defaults to 1 MiB
    assert (await rng(offset="7", limit="3"))["BytesBase64"] == data[7:10]  # numbers as text, as everywhere
    assert (await rng(offset=size + 1))["Status"] == {
        "code": 416, "message": f"offset {size + 1} is past the end of the file ({size} bytes)"}
    assert (await rng(offset=size + 1))["Size"] == size
    assert (await rng(offset=-1))["Status"] == {"code": 422, "message": "offset: must be at least 0"}
    assert (await rng(limit=(1 << 20) + 1))["Status"] == {"code": 422, "message": "limit: must be at most 1048576"}
    assert (await rng(limit=-5))["Status"] == {"code": 422, "message": "limit: must be at least 0"}
    assert (await rng(offset="x"))["Status"] == {"code": 400, "message": "offset: must be an integer"}
    assert (await rng(limit=[1]))["Status"] == {"code": 400, "message": "limit: must be an integer"}
    assert (await rng(offset=1.5))["Status"] == {"code": 400, "message": "offset: must be an integer"}
    with pytest.raises(RangeNotSatisfiable):
        await alice.get_media_range(key, size + 10)
    # Who may see a range is who may see the file.
    stranger = await on_parts()
    answer = await stranger.call("GetMedia", {"hash": key, "offset": 0, "limit": 10})
    assert answer["Status"] == {"code": 404, "message": "media not found"}


async def test_ranges_of_a_file_sent_in_one_frame(on_parts):
    alice = await on_parts()
    data = PNG + os.urandom(1000)
    key = await alice.upload_media(data, "png")
    got = await alice.get_media_range(key, 8, 100)
    assert (got.data, got.offset, got.size, got.extension) == (data[8:108], 8, len(data), "png")


# -- limits ------------------------------------------------------------------------------------


async def test_the_inline_limit_bounds_media_and_the_whole_file_limit_the_upload(on_parts):
    alice = await on_parts()
    with pytest.raises(TooLarge, match="^bytes: larger than 262144 bytes$"):
        await alice.upload_media(os.urandom(256 * 1024 + 1), "zip")
    with pytest.raises(ProtocolError) as refused_frame:  # far over: refused by the frame decoder, unread
        await alice.upload_media(os.urandom(512 * 1024), "zip")
    assert refused_frame.value.code == 413
    with pytest.raises(ProtocolError) as refused_part:  # a part frame far over the part size likewise
        await alice.call("UploadPart", {"upload": "x", "part": 0, "bytes": os.urandom(4 * PART)})
    assert refused_part.value.code == 413
    await refused(413, alice.start_upload((1 << 20) + 1, "zip"), r"^size: larger than 1048576 bytes$")


async def test_quota_counts_files_and_unfinished_uploads_and_racing_starts_cannot_share_it(start_server, user):
    quota = 10 * PART
    server = start_server("--upload-part-size", str(PART), "--media-quota", str(quota), "--rate-media", "0")
    alice = await user(target=server)
    await alice.upload_media(os.urandom(2 * PART), "zip")  # 2 of 10 parts' worth used
    results = await asyncio.gather(
        *(alice.start_upload(5 * PART, "zip") for _ in range(2)), return_exceptions=True
    )
    refusals = [r for r in results if isinstance(r, TooLarge)]
    assert len(refusals) == 1, results
    assert refusals[0].message == (
        f"media quota exceeded: {7 * PART} of {quota} bytes are used, this file needs {5 * PART} more")
    assert (refusals[0].extra["QuotaBytes"], refusals[0].extra["UsedBytes"]) == (quota, 7 * PART)
    # What is left is 3 parts' worth, for an upload or a Media alike.
    await refused(413, alice.upload_media(os.urandom(3 * PART + 1), "zip"), "^media quota exceeded")
    await alice.upload_media(os.urandom(3 * PART), "zip")
    await refused(413, alice.start_upload(1, "zip"), "^media quota exceeded")


async def test_unfinished_uploads_per_account_are_bounded(start_server, user):
    server = start_server("--max-open-uploads", "2", "--rate-media", "0")
    alice = await user(target=server)
    first = await alice.start_upload(10, "txt")
    await alice.start_upload(10, "txt")
    await refused(409, alice.start_upload(10, "txt"), "^already 2 unfinished uploads: finish one or let it expire$")
    await alice.upload_part(first.upload, 0, b"0123456789")
    await alice.finish_upload(first.upload)
    await alice.start_upload(10, "txt")


async def test_starts_spend_the_media_rate(start_server, user):
    server = start_server("--rate-media", "2/600")
    alice = await user(target=server)
    await alice.start_upload(10, "txt")
    await alice.upload_media(b"one frame", "txt")
    await refused(429, alice.start_upload(10, "txt"), "^too many uploads from this account")


async def test_unfinished_uploads_expire(start_server, user):
    server = start_server("--upload-part-size", str(PART), "--upload-ttl", "1")
    alice = await user(target=server)
    data = os.urandom(2 * PART)
    upload = (await alice.start_upload(len(data), "zip")).upload
    await alice.upload_part(upload, 0, data[:PART])
    assert staged(server, upload).exists()
    deadline = time.monotonic() + 15
    while staged(server, upload).exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not staged(server, upload).exists()
    for call in (alice.upload_status(upload), alice.finish_upload(upload), alice.upload_part(upload, 1, data[PART:])):
        await refused(404, call, f"^{re.escape(NO_UPLOAD)}$")
    # Expired uploads count against nothing: a new one starts.
    assert (await alice.start_upload(len(data), "zip")).resumed is False
    assert any("removed 1 expired uploads" in line for line in server.log)


async def test_unknown_keys_and_uploads_answer_404_for_ranges_and_status(on_parts):
    alice = await on_parts()
    with pytest.raises(NotFound):
        await alice.get_media_range("f" * 32, 0, 10)
    await refused(404, alice.upload_status("nope"), "^upload not found")
    answer = await alice.call("UploadStatus", {"upload": "x" * 65})
    assert answer["Status"] == {"code": 422, "message": "upload: longer than 64 characters"}
    assert (await alice.call("UploadStatus", {}))["Status"] == {"code": 400, "message": "upload: field is required"}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


async def test_parts_sent_again_with_other_bytes_are_what_the_file_keeps_and_is_named_by(on_parts, parts_server):
    """The file's hash is kept as parts arrive: a part that arrived early is
    hashed from the file once the gap before it is filled, and a part sent
    again over hashed bytes makes the finish hash the file anew.  Either way
    the stored file is the last bytes sent, named by their SHA-256, and a
    sha256 given at the start is checked against them."""
    alice = await on_parts()
    first = [os.urandom(PART) for _ in range(3)]
    final = [os.urandom(PART), first[1], os.urandom(PART)]
    data = b"".join(final)
    for sha256 in (None, hashlib.sha256(data).digest()):
        upload = (await alice.start_upload(len(data), "zip", sha256)).upload
        await alice.upload_part(upload, 0, first[0])  # hashed at once
        await alice.upload_part(upload, 2, first[2])  # early: waits for part 1
        await alice.upload_part(upload, 2, final[2])  # early, again, other bytes
        await alice.upload_part(upload, 1, final[1])  # fills the gap: part 2 read back from the file
        await alice.upload_part(upload, 0, final[0])  # over hashed bytes: the finish reads the file
        key = await alice.finish_upload(upload)
        assert (await alice.get_media(key)).data == data
        digest = hashlib.sha256(data).hexdigest()
        assert (parts_server.data_dir / "media" / digest[:2] / digest[2:4] / digest).read_bytes() == data


async def test_parts_in_order_are_hashed_as_they_arrive(on_parts, parts_server):
    """Parts sent in order, all at once (so they are written, synced and
    recorded together, in any order), finish with the right name and bytes."""
    alice = await on_parts()
    data = os.urandom(3 * PART + 7)
    upload = (await alice.start_upload(len(data), "zip", hashlib.sha256(data).digest())).upload
    parts = pieces(data)
    await asyncio.gather(*(alice.upload_part(upload, i, part) for i, part in enumerate(parts)))
    assert (await alice.upload_status(upload)).missing == ()
    key = await alice.finish_upload(upload)
    assert (await alice.get_media(key)).data == data
    digest = hashlib.sha256(data).hexdigest()
    assert (parts_server.data_dir / "media" / digest[:2] / digest[2:4] / digest).exists()


async def test_a_part_is_refused_once_its_upload_is_not_its_senders_or_has_expired(on_parts, parts_server):
    """After its first part, a node takes an upload's later parts without
    reading its row again; who may add a part, and until when, is still
    decided by the commit that records it: another account's part is 404,
    and so is a part arriving after the upload expired, before any pass
    removed it."""
    alice, mallory = await on_parts(), await on_parts()
    data = os.urandom(3 * PART)
    upload = (await alice.start_upload(len(data), "zip")).upload
    parts = pieces(data)
    await alice.upload_part(upload, 0, parts[0])
    await refused(404, mallory.upload_part(upload, 1, parts[1]), f"^{re.escape(NO_UPLOAD)}$")
    conn = await asyncpg.connect(database_url(parts_server))
    try:
        await conn.execute("UPDATE uploads SET expires_at = now() - interval '1 second' WHERE id = $1", upload)
    finally:
        await conn.close()
    await refused(404, alice.upload_part(upload, 1, parts[1]), f"^{re.escape(NO_UPLOAD)}$")
    await refused(404, alice.upload_status(upload), f"^{re.escape(NO_UPLOAD)}$")


async def test_a_part_racing_the_finish_is_in_the_file_or_refused(on_parts):
    """The last part and the finish sent at once: either the part is stored
    and synced before the finish hashes the file (the key has every byte),
    or the part is refused as the upload is being finished and the finish
    says which part is missing.  Never a key whose bytes lack the part."""
    alice = await on_parts()
    data = os.urandom(3 * PART)
    parts = pieces(data)
    for _ in range(4):
        upload = (await alice.start_upload(len(data), "zip")).upload
        for i in (0, 1):
            await alice.upload_part(upload, i, parts[i])
        stored, finished = await asyncio.gather(
            alice.upload_part(upload, 2, parts[2]), alice.finish_upload(upload), return_exceptions=True
        )
        if isinstance(finished, str):
            assert stored is None, stored  # stored: answered 200
            key = finished
        else:
            assert getattr(finished, "code", None) == 409, finished
            if isinstance(stored, BaseException):
                assert getattr(stored, "code", None) == 409, stored
                await alice.upload_part(upload, 2, parts[2])
            key = await alice.finish_upload(upload)
        assert (await alice.get_media(key)).data == data
