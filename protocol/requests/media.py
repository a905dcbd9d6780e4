"""Typed shapes of the media requests: ``Media`` (upload) and ``GetMedia`` (by key).

An upload names its file type by ``extension``.  Only extensions on an
allow-list are stored: the extension becomes part of what clients are told
about the file, so it must never carry a path, and a browser-like client must
never be tricked into rendering a script.  For images the bytes must also
start with the format's magic number, so an "image" that is really something
else is refused before it is stored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ..fields import Fields
from ..status import Unprocessable

ALLOWED_EXTENSIONS: tuple[str, ...] = (
    "png", "jpg", "jpeg", "gif", "webp", "bmp",
    "mp4", "webm", "mp3", "ogg", "wav",
    "pdf", "txt", "zip",
)
_EXTENSION_RE = re.compile(r"^[a-z0-9]{1,10}$")
MAX_KEY_LENGTH = 128


def _is_webp(data: bytes) -> bool:
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


#: Image formats and the test their first bytes must pass.
IMAGE_MAGIC: dict[str, Callable[[bytes], bool]] = {
    "png": lambda d: d.startswith(b"\x89PNG\r\n\x1a\n"),
    "jpg": lambda d: d.startswith(b"\xff\xd8\xff"),
    "jpeg": lambda d: d.startswith(b"\xff\xd8\xff"),
    "gif": lambda d: d.startswith((b"GIF87a", b"GIF89a")),
    "webp": _is_webp,
    "bmp": lambda d: d.startswith(b"BM"),
}


def check_extension(raw: str) -> str:
    """The extension in canonical (lower-case) form, or 422.

    Letters and digits only: "../x", "png/../../", ".png" and "tar.gz" are all
    refused before the allow-list is even consulted."""
    ext = raw.lower()
    if not _EXTENSION_RE.match(ext):
        raise Unprocessable("extension: only letters and digits, like 'png' (no dots or slashes)")
    if ext not in ALLOWED_EXTENSIONS:
        raise Unprocessable(f"extension: {ext!r} is not allowed; allowed: {', '.join(ALLOWED_EXTENSIONS)}")
    return ext


def check_content(ext: str, data: bytes) -> None:
    """Refuse bytes that are not what an image extension says they are.

    Only images are checked: for them a wrong type is both common (a renamed
    file) and harmful (a client decodes it in place).  The other types are
    stored as sent."""
    check = IMAGE_MAGIC.get(ext)
    if check is not None and not check(data):
        raise Unprocessable(f"bytes are not a {ext} image")


@dataclass(frozen=True, slots=True)
class MediaUpload:
    """``Media``: ``extension`` and ``bytes`` (raw bytes in msgpack, base64 in JSON)."""

    extension: str
    data: bytes

    @classmethod
    def parse(cls, body: Fields, max_size: int) -> MediaUpload:
        ext = check_extension(body.str("extension", min_len=1, max_len=32))
        if body.raw("bytes") in ("", b""):
            raise Unprocessable("bytes: must not be empty")
        data = body.bytes("bytes", max_size=max_size)
        check_content(ext, data)
        return cls(extension=ext, data=data)


@dataclass(frozen=True, slots=True)
class MediaDownload:
    """``GetMedia`` by key.  The original calls the key ``hash``."""

    key: str

    @classmethod
    def parse(cls, body: Fields) -> MediaDownload:
        return cls(key=body.str("hash", min_len=1, max_len=MAX_KEY_LENGTH, strip=True))


def wants_dialog_listing(body: Fields) -> bool:
    """``GetMedia`` with ``pkDialog`` lists a dialog's media instead of sending one file."""
    return body.raw("pkDialog") is not None


#: The thumbnails ``GetMedia`` can answer instead of an image (``thumb``):
#: each fits its longest side into this many pixels, never enlarged.
THUMB_SIZES: dict[str, int] = {"s": 160, "m": 640}


def wanted_thumb(body: Fields) -> str | None:
    """``GetMedia``'s ``thumb``: ``"s"`` or ``"m"``, or None (absent, null or
    empty) for the file itself, as before the field existed."""
    tag = body.str("thumb", required=False, max_len=16, strip=True)
    if not tag:
        return None
    if tag not in THUMB_SIZES:
        raise Unprocessable('thumb: must be "s" (160 px) or "m" (640 px)')
    return tag


def has_thumbnails(extension: str) -> bool:
    """Images (the extensions with a magic check) have thumbnails; other files do not."""
    return extension in IMAGE_MAGIC
