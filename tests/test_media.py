"""Media end to end: upload and download in both codecs, content-addressed
storage, limits, validation and who may download what.  Every test that talks
to the shared ``server`` runs twice: media on local disk, and media in an S3
bucket (a real SeaweedFS)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
from pathlib import Path

import obstore
import pytest

from client_sdk import Codec, NotFound, TooLarge, Unprocessable
from client_sdk.api.media import MediaFile
from client_sdk.errors import ProtocolError

PNG = b"\x89PNG\r\n\x1a\n"
JPEG = b"\xff\xd8\xff\xe0"
MAGIC = {
    "png": PNG,
    "jpg": JPEG,
    "jpeg": JPEG,
    "gif": b"GIF89a",
    "webp": b"RIFF\x10\x00\x00\x00WEBP",
    "bmp": b"BM",
}
NOT_FOUND = {"code": 404, "message": "media not found"}


def png(size: int = 64) -> bytes:
    """Fresh PNG-looking bytes (the magic number, then random bytes)."""
    return PNG + os.urandom(size - len(PNG))


@pytest.fixture(scope="module", params=["local", "s3"])
def server(request, server, start_server):
    """The module's server: the shared one (media on local disk), then one
    whose media are in the S3 bucket."""
    if request.param == "local":
        yield server
        return
    s3 = request.getfixturevalue("s3")
    on_s3 = start_server(*s3.args())
    on_s3.s3 = s3
    yield on_s3
    on_s3.stop()


def stored_path(server, data: bytes) -> Path:
    digest = hashlib.sha256(data).hexdigest()
    return server.data_dir / "media" / digest[:2] / digest[2:4] / digest


def copies_of(path: Path) -> list[str]:
    """The stored file and any temporary upload files beside it (other
    contents may share the directory: it is named by a hash prefix)."""
    return sorted(n for n in os.listdir(path.parent) if n == path.name or n.startswith("."))


def assert_stored_once(server, data: bytes) -> None:
    """One copy of ``data``'s content in the server's store, holding exactly
    those bytes, and nothing else under its name (no temporary files)."""
    digest = hashlib.sha256(data).hexdigest()
    s3 = getattr(server, "s3", None)
    if s3 is None:
        path = stored_path(server, data)
        assert path.read_bytes() == data
        assert copies_of(path) == [path.name]
        return
    client = s3.client()
    found = [m["path"] for batch in obstore.list(client, prefix=f"blobs/{digest[:2]}/{digest[2:4]}/") for m in batch]
    assert [name for name in found if digest in name] == [f"blobs/{digest[:2]}/{digest[2:4]}/{digest}"]
    assert bytes(obstore.get(client, f"blobs/{digest[:2]}/{digest[2:4]}/{digest}").bytes()) == data


# -- round trips -------------------------------------------------------------------------


async def test_round_trip_msgpack(user):
    alice = await user()
    data = png(5000)
    key = await alice.upload_media(data, "png")
    assert re.fullmatch(r"[0-9a-f]{32}", key)
    assert await alice.get_media(key) == MediaFile(data=data, extension="png", key=key)
    # On the wire the bytes are a msgpack bin, not base64.
    answer = await alice.call("GetMedia", {"hash": key})
    assert answer == {
        "Status": {"code": 200, "message": "Media sent"},
        "BytesBase64": data,
        "Extension": "png",
        "Hash": key,
    }


async def test_round_trip_json(user):
    alice = await user(codec=Codec.JSON)
    data = os.urandom(3000)
    key = await alice.upload_media(data, "zip")
    assert await alice.get_media(key) == MediaFile(data=data, extension="zip", key=key)
    # The original's JSON shapes: base64 in, base64 out.
    data2 = png()
    answer = await alice.call("Media", {"extension": "png", "bytes": base64.b64encode(data2).decode()})
    assert answer["Status"] == {"code": 200, "message": "Media uploaded"}
    answer = await alice.call("GetMedia", {"hash": answer["Key"]})
    assert answer["BytesBase64"] == base64.b64encode(data2).decode()
    assert answer["Extension"] == "png"


async def test_msgpack_upload_json_download(user, connect):
    alice = await user()
    data = png(777)
    key = await alice.upload_media(data, "png")
    same_user = await connect(codec=Codec.JSON)
    await same_user.login(alice.email, alice.password)
    assert (await same_user.get_media(key)).data == data


@pytest.mark.parametrize("ext", sorted(MAGIC))
async def test_every_image_type_with_its_magic_is_accepted(user, ext):
    alice = await user()
    data = MAGIC[ext] + os.urandom(100)
    key = await alice.upload_media(data, ext.upper())  # case does not matter; stored lower-case
    assert await alice.get_media(key) == MediaFile(data=data, extension=ext, key=key)


# -- the store ----------------------------------------------------------------------------


async def test_same_bytes_are_stored_once(server, user):
    alice, bob = await user(), await user()
    data = png(2048)
    first = await alice.upload_media(data, "png")
    second = await bob.upload_media(data, "png")
    again = await alice.upload_media(data, "png")
    assert len({first, second, again}) == 3  # one key per upload...
    assert_stored_once(server, data)  # ...one copy per content
    assert (await bob.get_media(second)).data == data
    # Each upload belongs to its uploader.
    with pytest.raises(NotFound):
        await bob.get_media(first)


async def test_concurrent_uploads_of_the_same_bytes(server, user):
    alice = await user()
    data = png(100_000)
    keys = await asyncio.gather(*(alice.upload_media(data, "png") for _ in range(8)))
    assert len(set(keys)) == 8
    assert_stored_once(server, data)  # no temporary files left behind
    for key in keys:
        assert (await alice.get_media(key)).data == data


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ext",
    ["../x", "png/../../", "..", ".png", "png.", "p/ng", "p\\ng", "tar.gz", "png ", "пнг"],
)
async def test_extensions_that_could_be_paths_are_refused(user, ext):
    alice = await user()
    with pytest.raises(Unprocessable, match=r"^extension: only letters and digits, like 'png' \(no dots or slashes\)$"):
        await alice.upload_media(png(), ext)


@pytest.mark.parametrize("ext", ["exe", "html", "svg", "js", "sh"])
async def test_extensions_off_the_allow_list_are_refused(user, ext):
    alice = await user()
    with pytest.raises(Unprocessable, match=f"^extension: '{ext}' is not allowed; allowed: png, jpg, jpeg, gif,"):
        await alice.upload_media(b"MZ" + os.urandom(10), ext)


@pytest.mark.parametrize(
    ("ext", "data"),
    [
        ("png", JPEG + b"1234"),
        ("jpg", PNG + b"1234"),
        ("jpeg", b"GIF89a"),
        ("gif", b"GIF90a" + b"xx"),
        ("webp", b"RIFF\x10\x00\x00\x00WAVE"),
        ("bmp", b"<svg onload=alert(1)>"),
        ("png", b"\x89PN"),
    ],
)
async def test_image_bytes_must_match_the_extension(user, ext, data):
    alice = await user()
    with pytest.raises(Unprocessable, match=f"^bytes are not a {ext} image$"):
        await alice.upload_media(data, ext)


async def test_non_image_types_are_stored_as_sent(user):
    alice = await user()
    key = await alice.upload_media(b"plain text, not a pdf", "pdf")
    assert (await alice.get_media(key)).data == b"plain text, not a pdf"


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({"extension": "png", "bytes": b""}, 422, "bytes: must not be empty"),
        ({"extension": "png", "bytes": ""}, 422, "bytes: must not be empty"),
        ({"extension": "png"}, 400, "bytes: field is required"),
        ({"bytes": PNG}, 400, "extension: field is required"),
        ({"extension": "", "bytes": PNG}, 422, "extension: must not be empty"),
        ({"extension": "png", "bytes": "not base64!"}, 400, "bytes: not valid base64"),
        ({"extension": "png", "bytes": 12345}, 400, "bytes: must be bytes or a base64 string"),
        ({"extension": ["png"], "bytes": PNG}, 400, "extension: must be a string"),
    ],
)
async def test_malformed_uploads(user, body, code, message):
    alice = await user()
    answer = await alice.call("Media", body)
    assert answer["Status"] == {"code": code, "message": message}


async def test_get_media_field_checks(user):
    alice = await user()
    assert (await alice.call("GetMedia", {}))["Status"] == {"code": 400, "message": "hash: field is required"}
    answer = await alice.call("GetMedia", {"hash": "a" * 129})
    assert answer["Status"] == {"code": 422, "message": "hash: longer than 128 characters"}
    assert (await alice.call("GetMedia", {"Hash": "0" * 32}))["Status"] == NOT_FOUND


async def test_size_limit(start_server, user):
    small = start_server("--max-media-size", "1000")
    alice = await user(target=small)
    key = await alice.upload_media(png(1000), "png")  # exactly the limit
    assert len((await alice.get_media(key)).data) == 1000
    with pytest.raises(TooLarge, match="^bytes: larger than 1000 bytes$"):
        await alice.upload_media(png(1001), "png")
    # In JSON the base64 text is refused before it is decoded.
    answer = await alice.call("Media", {"extension": "png", "bytes": base64.b64encode(png(3000)).decode()},
                              codec=Codec.JSON)
    assert answer["Status"] == {"code": 413, "message": "bytes: larger than 1000 bytes"}
    # A frame far beyond the limit is refused by the frame decoder, unread;
    # the connection stays usable.
    with pytest.raises(ProtocolError) as refused:
        await alice.upload_media(png(200_000), "png")
    assert refused.value.code == 413
    assert (await alice.get_media(key)).extension == "png"


# -- who may download ----------------------------------------------------------------------


async def test_strangers_get_the_same_404_as_for_unknown_keys(user):
    alice, stranger = await user(), await user()
    key = await alice.upload_media(png(), "png")
    assert (await stranger.call("GetMedia", {"hash": key}))["Status"] == NOT_FOUND
    assert (await stranger.call("GetMedia", {"hash": "f" * 32}))["Status"] == NOT_FOUND
    assert (await alice.get_media(key)).key == key


async def test_profile_and_dialog_photos_are_visible_to_anyone(user):
    alice, bob, stranger = await user(), await user(), await user()
    photo = await alice.upload_media(png(), "png")
    with pytest.raises(NotFound):
        await stranger.get_media(photo)
    await alice.change_user(image_key=photo)
    assert (await stranger.get_media(photo)).key == photo

    dialog_photo = await bob.upload_media(MAGIC["jpg"] + os.urandom(50), "jpg")
    with pytest.raises(NotFound):
        await stranger.get_media(dialog_photo)
    await bob.create_dialog("photo test", photo=dialog_photo)
    assert (await stranger.get_media(dialog_photo)).extension == "jpg"


async def test_attachments_are_visible_to_dialog_members_only(user):
    alice, member, outsider = await user(), await user(), await user()
    key = await alice.upload_media(png(), "png")
    dialog = await alice.create_dialog("attachments", members=[member.user_id])
    # Membership alone shows nothing; the attachment does.
    with pytest.raises(NotFound):
        await member.get_media(key)
    msgkey = await alice.send_message(dialog, "look", media=[key])
    assert (await member.get_media(key)).data == (await alice.get_media(key)).data
    assert (await outsider.call("GetMedia", {"hash": key}))["Status"] == NOT_FOUND

    # A member who leaves loses access; a message deleted for everyone takes its media along.
    await member.leave(dialog)
    with pytest.raises(NotFound):
        await member.get_media(key)
    await alice.change_dialog(dialog, add_members=[member.user_id])
    assert (await member.get_media(key)).key == key
    await alice.delete_message(dialog, msgkey)
    with pytest.raises(NotFound):
        await member.get_media(key)
    assert (await alice.get_media(key)).key == key  # the uploader always may


async def test_get_media_with_pk_dialog_is_the_dialog_listing(user):
    alice = await user()
    answer = await alice.call("GetMedia", {"PkDialog": "no-such-dialog", "take": 10, "skip": 0})
    from server.handlers import dialogs

    if hasattr(dialogs, "dialog_media"):
        # Served by the dialogs area: whatever it answers, it is not a download.
        assert "BytesBase64" not in answer
        assert answer["Status"]["message"] != "hash: field is required"
    else:
        assert answer["Status"] == {"code": 400, "message": "dialog media listing is not available"}
