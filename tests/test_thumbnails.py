"""Thumbnails end to end (``GetMedia`` with ``thumb``): every image format,
both sizes, transparency, EXIF orientation, made once and then served from
the store, shared between keys of one file, and seen by exactly those who
may see the image."""

from __future__ import annotations

import asyncio
import base64
import hashlib

import pytest
from PIL import Image

from client_sdk import Codec, NotFound, Thumbnail, Unprocessable

from .images import BLUE, RED, close, decode, encode, halves, noisy
from .support import ServerProcess
from .test_metrics import scrape, value

NOT_FOUND = {"code": 404, "message": "media not found"}


@pytest.fixture(scope="module")
def thumbs_server(start_server) -> ServerProcess:
    """Its own server, for metrics that count only this module's thumbnails."""
    return start_server("--metrics-port", "0")


@pytest.fixture
def member(user, thumbs_server):
    """A new user on ``thumbs_server``."""
    return lambda **kw: user(target=thumbs_server, **kw)


async def made(server: ServerProcess) -> dict[str, float]:
    _, samples = await scrape(server)
    return {outcome: value(samples, "sessia_thumbnails_total", outcome=outcome)
            for outcome in ("made", "refused", "stored")}


def blob_count(server: ServerProcess) -> int:
    return sum(1 for p in (server.data_dir / "media").rglob("*") if p.is_file() and not p.name.startswith("."))


# -- every format, both sizes ---------------------------------------------------------------


@pytest.mark.parametrize("ext", ["png", "jpg", "jpeg", "gif", "webp", "bmp"])
async def test_every_image_format_has_both_sizes(member, ext):
    alice = await member()
    original = encode(halves(1200, 800), ext)
    key = await alice.upload_media(original, ext)
    m = await alice.get_thumbnail(key, "m")
    s = await alice.get_thumbnail(key, "s")
    assert (m.width, m.height, m.extension, m.key, m.size) == (640, 427, "jpg", key, "m")
    assert (s.width, s.height, s.extension, s.key, s.size) == (160, 107, "jpg", key, "s")
    for thumb in (m, s):
        picture = decode(thumb.data)
        assert (picture.format, picture.size) == ("JPEG", (thumb.width, thumb.height))
        assert close(picture.getpixel((2, thumb.height // 2)), RED)
        assert close(picture.getpixel((thumb.width - 3, thumb.height // 2)), BLUE)
    # The file itself is unchanged, and asked for without thumb, as before.
    assert (await alice.get_media(key)).data == original


async def test_the_answer_on_the_wire(member):
    alice = await member()
    key = await alice.upload_media(encode(halves(300, 200), "png"), "png")
    answer = await alice.call("GetMedia", {"hash": key, "thumb": "s"})
    data = answer.pop("BytesBase64")
    assert answer == {"Status": {"code": 200, "message": "Thumbnail sent"}, "Extension": "jpg", "Hash": key,
                      "Thumb": "s", "Width": 160, "Height": 107}
    assert isinstance(data, bytes) and decode(data).size == (160, 107)
    # JSON: the same, bytes in base64.
    answer = await alice.call("GetMedia", {"Hash": key, "Thumb": "s"}, codec=Codec.JSON)
    assert base64.b64decode(answer["BytesBase64"]) == data
    # Absent, null or empty: the file itself, exactly as before the field existed.
    for body in ({"hash": key}, {"hash": key, "thumb": None}, {"hash": key, "thumb": ""}):
        answer = await alice.call("GetMedia", body)
        assert set(answer) == {"Status", "BytesBase64", "Extension", "Hash"}
        assert answer["Status"] == {"code": 200, "message": "Media sent"}
    # A thumbnail is sent whole: with a range it is refused, and the range alone is the file's.
    for body in ({"hash": key, "thumb": "s", "offset": 0}, {"hash": key, "thumb": "m", "limit": 10}):
        answer = await alice.call("GetMedia", body)
        assert answer["Status"] == {"code": 422, "message": "thumb: a thumbnail is sent whole, not by range (offset, limit)"}
    answer = await alice.call("GetMedia", {"hash": key, "offset": 0, "limit": 8})
    assert answer["BytesBase64"] == b"\x89PNG\r\n\x1a\n" and answer["Offset"] == 0


async def test_aspect_ratio_kept_and_never_enlarged(member):
    alice = await member()
    wide = await alice.upload_media(encode(noisy(1000, 250), "png"), "png")
    assert [(t.width, t.height) for t in (await alice.get_thumbnail(wide, "m"), await alice.get_thumbnail(wide, "s"))] \
        == [(640, 160), (160, 40)]
    tall = await alice.upload_media(encode(noisy(300, 900), "jpg"), "jpg")
    assert [(t.width, t.height) for t in (await alice.get_thumbnail(tall, "m"), await alice.get_thumbnail(tall, "s"))] \
        == [(213, 640), (53, 160)]
    small = await alice.upload_media(encode(noisy(50, 30), "png"), "png")
    assert [(t.width, t.height) for t in (await alice.get_thumbnail(small, "m"), await alice.get_thumbnail(small, "s"))] \
        == [(50, 30), (50, 30)]


# -- transparency, orientation, metadata ------------------------------------------------------


@pytest.mark.parametrize("ext", ["png", "webp", "gif"])
async def test_transparency_gives_png_with_its_alpha(member, ext):
    alice = await member()
    picture = halves(800, 400, "RGBA")
    if ext == "gif":
        picture = picture.convert("RGB").quantize(4)
        blue = next(i for i, c in enumerate(picture.getpalette()[:12][::3]) if c < 100)
        original = encode(picture, ext, transparency=blue)
    else:
        original = encode(picture, ext, **({"lossless": True} if ext == "webp" else {}))
    key = await alice.upload_media(original, ext)
    thumb = await alice.get_thumbnail(key, "m")
    assert (thumb.extension, thumb.width, thumb.height) == ("png", 640, 320)
    shown = decode(thumb.data).convert("RGBA")
    assert shown.getpixel((5, 160))[3] == 255 and close(shown.getpixel((5, 160)), RED)
    assert shown.getpixel((635, 160))[3] == 0  # the transparent half stays transparent


async def test_an_alpha_channel_that_is_all_opaque_gives_jpeg(member):
    alice = await member()
    key = await alice.upload_media(encode(halves(400, 200).convert("RGBA"), "png"), "png")
    assert (await alice.get_thumbnail(key, "s")).extension == "jpg"


async def test_exif_orientation_is_applied_and_metadata_dropped(member):
    alice = await member()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to show
    exif[0x010F] = "SecretCam"  # camera maker: metadata that must not travel
    key = await alice.upload_media(encode(halves(800, 400), "jpg", exif=exif.tobytes()), "jpg")
    thumb = await alice.get_thumbnail(key, "m")
    assert (thumb.width, thumb.height) == (320, 640)  # portrait now
    shown = decode(thumb.data)
    assert close(shown.getpixel((160, 10)), RED) and close(shown.getpixel((160, 630)), BLUE)  # left went to the top
    assert not shown.getexif() and b"SecretCam" not in thumb.data


async def test_the_first_frame_of_an_animation(member):
    alice = await member()
    frames = [Image.new("RGB", (300, 300), colour) for colour in (RED, BLUE, BLUE)]
    original = encode(frames[0], "gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    key = await alice.upload_media(original, "gif")
    thumb = await alice.get_thumbnail(key, "s")
    assert close(decode(thumb.data).getpixel((80, 80)), RED)


# -- made once, kept, shared --------------------------------------------------------------------


async def test_made_once_then_served_from_the_store_for_every_key_of_the_file(member, thumbs_server):
    alice, bob = await member(), await member()
    original = encode(noisy(900, 600), "jpg")
    key = await alice.upload_media(original, "jpg")
    before, blobs = await made(thumbs_server), blob_count(thumbs_server)
    first = await alice.get_thumbnail(key, "s")
    after_first = await made(thumbs_server)
    assert after_first["made"] == before["made"] + 1
    assert blob_count(thumbs_server) == blobs + 2  # both sizes made and stored at once
    # The other size, the same size again, and another upload of the same bytes
    # (another key) are all answered from the store: nothing is decoded again.
    other_key = await bob.upload_media(original, "jpg")
    m = await alice.get_thumbnail(key, "m")
    again = await alice.get_thumbnail(key, "s")
    shared = await bob.get_thumbnail(other_key, "s")
    after = await made(thumbs_server)
    assert after["made"] == after_first["made"]
    assert after["stored"] == after_first["stored"] + 3
    assert blob_count(thumbs_server) == blobs + 2
    assert again.data == first.data and shared.data == first.data and shared.key == other_key
    assert (m.width, m.height) == (640, 427)


async def test_concurrent_requests_for_a_missing_thumbnail_make_it_once(member, thumbs_server):
    alice = await member()
    key = await alice.upload_media(encode(noisy(2000, 1500), "png"), "png")
    before = await made(thumbs_server)
    answers = await asyncio.gather(*(alice.get_thumbnail(key, size) for size in ["s", "m"] * 6))
    after = await made(thumbs_server)
    assert after["made"] == before["made"] + 1
    assert len({t.data for t in answers if t.size == "s"}) == 1
    assert len({t.data for t in answers if t.size == "m"}) == 1


async def test_a_thumbnail_whose_blob_went_missing_is_made_again(member, thumbs_server):
    alice = await member()
    key = await alice.upload_media(encode(noisy(500, 500), "png"), "png")
    thumb = await alice.get_thumbnail(key, "m")
    digest = hashlib.sha256(thumb.data).hexdigest()
    (thumbs_server.data_dir / "media" / digest[:2] / digest[2:4] / digest).unlink()
    before = await made(thumbs_server)
    assert (await alice.get_thumbnail(key, "m")).data == thumb.data
    assert (await made(thumbs_server))["made"] == before["made"] + 1


# -- who may see them, and what is refused ------------------------------------------------------


async def test_strangers_get_the_404_of_the_original(member):
    alice, friend, stranger = await member(), await member(), await member()
    key = await alice.upload_media(encode(noisy(200, 200), "png"), "png")
    for body in ({"hash": key, "thumb": "s"}, {"hash": key}, {"hash": "f" * 32, "thumb": "m"}):
        assert (await stranger.call("GetMedia", body))["Status"] == NOT_FOUND
    dialog = await alice.create_dialog("photos", members=[friend.user_id])
    with pytest.raises(NotFound):
        await friend.get_thumbnail(key, "s")
    msgkey = await alice.send_message(dialog, "look", media=[key])
    assert isinstance(await friend.get_thumbnail(key, "s"), Thumbnail)
    await alice.delete_message(dialog, msgkey)
    with pytest.raises(NotFound):
        await friend.get_thumbnail(key, "s")
    assert (await alice.get_thumbnail(key, "s")).key == key


async def test_files_that_are_not_images_have_no_thumbnails(member):
    alice, stranger = await member(), await member()
    key = await alice.upload_media(b"%PDF-1.4 not an image", "pdf")
    answer = await alice.call("GetMedia", {"hash": key, "thumb": "s"})
    assert answer["Status"] == {
        "code": 422, "message": "thumb: only images have thumbnails (png, jpg, jpeg, gif, webp, bmp), not pdf"}
    with pytest.raises(Unprocessable):
        await alice.get_thumbnail(key)
    # To whom may not see the file, it does not exist: 404, not 422.
    assert (await stranger.call("GetMedia", {"hash": key, "thumb": "s"}))["Status"] == NOT_FOUND


@pytest.mark.parametrize(
    ("thumb", "code", "message"),
    [
        ("x", 422, 'thumb: must be "s" (160 px) or "m" (640 px)'),
        ("S", 422, 'thumb: must be "s" (160 px) or "m" (640 px)'),
        ("l", 422, 'thumb: must be "s" (160 px) or "m" (640 px)'),
        (160, 422, 'thumb: must be "s" (160 px) or "m" (640 px)'),
        (["s"], 400, "thumb: must be a string"),
        ("s" * 17, 422, "thumb: longer than 16 characters"),
    ],
)
async def test_bad_thumb_values(member, thumb, code, message):
    alice = await member()
    answer = await alice.call("GetMedia", {"hash": "0" * 32, "thumb": thumb})
    assert answer["Status"] == {"code": code, "message": message}
