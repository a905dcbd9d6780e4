"""Typed shapes of the media requests: ``Media`` (upload in one frame),
``GetMedia`` (by key, whole or by range) and the upload in parts
(``UploadStart``, ``UploadPart``, ``UploadStatus``, ``UploadFinish``).

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
from ..status import TooLarge, Unprocessable

UPLOAD_START = "UploadStart"
UPLOAD_PART = "UploadPart"
UPLOAD_STATUS = "UploadStatus"
UPLOAD_FINISH = "UploadFinish"

ALLOWED_EXTENSIONS: tuple[str, ...] = (
    "png", "jpg", "jpeg", "gif", "webp", "bmp",
    "mp4", "webm", "mp3", "ogg", "wav",
    "pdf", "txt", "zip",
)
_EXTENSION_RE = re.compile(r"^[a-z0-9]{1,10}$")
MAX_KEY_LENGTH = 128
#: The most bytes one ``GetMedia`` range answers: a range answer is then
#: never larger than an ordinary frame, whatever the file's size.
MAX_RANGE = 1 << 20
#: Upload ids are 32 hexadecimal characters; a longer text is refused unread.
MAX_UPLOAD_ID_LENGTH = 64
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


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
    """``GetMedia`` by key.  The original calls the key ``hash``.

    With ``offset`` or ``limit`` (or both) it asks for a range: ``limit``
    bytes (at most ``MAX_RANGE``, the default) from ``offset`` (default 0).
    Without either it asks for the whole file, as the original did."""

    key: str
    offset: int | None = None
    limit: int | None = None

    @property
    def ranged(self) -> bool:
        return self.offset is not None

    @classmethod
    def parse(cls, body: Fields) -> MediaDownload:
        key = body.str("hash", min_len=1, max_len=MAX_KEY_LENGTH, strip=True)
        offset = body.int("offset", required=False, minimum=0)
        limit = body.int("limit", required=False, minimum=0, maximum=MAX_RANGE)
        if offset is None and limit is None:
            return cls(key=key)
        return cls(key=key, offset=offset or 0, limit=MAX_RANGE if limit is None else limit)


@dataclass(frozen=True, slots=True)
class UploadStart:
    """``UploadStart``: the whole file's ``size`` and ``extension``, and
    optionally its ``sha256`` (64 hexadecimal characters), which the server
    checks when the upload finishes and by which it finds an unfinished
    upload of the same file to resume."""

    size: int
    extension: str
    sha256: bytes | None

    @classmethod
    def parse(cls, body: Fields, max_size: int) -> UploadStart:
        ext = check_extension(body.str("extension", min_len=1, max_len=32))
        size = body.int("size", minimum=1)
        if size > max_size:
            raise TooLarge(f"size: larger than {max_size} bytes")
        digest = body.str("sha256", required=False, max_len=128, strip=True)
        if digest is not None and not _SHA256_RE.match(digest.lower()):
            raise Unprocessable("sha256: must be 64 hexadecimal characters")
        return cls(size=size, extension=ext, sha256=bytes.fromhex(digest) if digest else None)


@dataclass(frozen=True, slots=True)
class UploadRef:
    """``UploadStatus`` and ``UploadFinish``: the ``upload`` id ``UploadStart`` answered."""

    upload: str

    @classmethod
    def parse(cls, body: Fields) -> UploadRef:
        return cls(upload=upload_id(body))


@dataclass(frozen=True, slots=True)
class UploadPart:
    """``UploadPart``: part number ``part`` (from 0) of ``upload``, and its
    ``bytes`` (raw in msgpack, base64 in JSON).  Whether the part's number
    and length fit the upload is checked against the upload itself."""

    upload: str
    part: int
    data: bytes

    @classmethod
    def parse(cls, body: Fields, max_part: int) -> UploadPart:
        upload = upload_id(body)
        part = body.int("part", minimum=0)
        if body.raw("bytes") in ("", b""):
            raise Unprocessable("bytes: must not be empty")
        return cls(upload=upload, part=part, data=body.bytes("bytes", max_size=max_part))


def upload_id(body: Fields) -> str:
    return body.str("upload", min_len=1, max_len=MAX_UPLOAD_ID_LENGTH, strip=True)


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
