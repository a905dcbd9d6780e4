"""SDK methods for the media requests (``Media``, ``GetMedia`` by key, with
or without ``thumb``)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal

from protocol import requests as R
from protocol.codecs import Codec

from .base import ClientBase


@dataclass(frozen=True, slots=True)
class MediaFile:
    """A downloaded file: its bytes, extension and key."""

    data: bytes
    extension: str
    key: str


#: A thumbnail size: ``"s"`` fits 160 px, ``"m"`` 640 px (protocol/requests/media.py ``THUMB_SIZES``).
ThumbSize = Literal["s", "m"]


@dataclass(frozen=True, slots=True)
class Thumbnail:
    """A thumbnail of an image: its bytes (``extension`` ``"jpg"``, or ``"png"``
    when the image has transparency), its pixel size, and the image's key."""

    data: bytes
    extension: str
    key: str
    size: ThumbSize
    width: int
    height: int


class MediaAPI(ClientBase):
    """Mixed into ``client_sdk.Client``; the wire form of bytes depends on its ``codec``."""

    def _wire_bytes(self, data: bytes) -> bytes | str:
        """msgpack carries bytes as they are; JSON has no bytes, so base64."""
        if self.codec == Codec.JSON:
            return base64.b64encode(data).decode("ascii")
        return bytes(data)

    async def upload_media(self, data: bytes, extension: str) -> str:
        """Upload a file; returns its key (for a profile photo, a message, a dialog photo)."""
        answer = await self.request(R.MEDIA, {"extension": extension, "bytes": self._wire_bytes(data)})
        return str(answer["Key"])

    async def get_media(self, key: str) -> MediaFile:
        """Download the file ``key``.  ``NotFound`` if it does not exist or is not yours to see."""
        answer = await self.request(R.GET_MEDIA, {"hash": key})
        return MediaFile(data=_answer_bytes(answer["BytesBase64"]), extension=str(answer["Extension"]), key=str(answer["Hash"]))


    async def get_thumbnail(self, key: str, size: ThumbSize = "m") -> Thumbnail:
        """The thumbnail ``size`` of the image ``key`` (made by the server on
        the first request).  ``NotFound`` as for ``get_media``;
        ``Unprocessable`` if ``key`` is not an image, or an image the server
        refuses to decode (a decompression bomb, a corrupt file)."""
        answer = await self.request(R.GET_MEDIA, {"hash": key, "thumb": size})
        return Thumbnail(
            data=_answer_bytes(answer["BytesBase64"]), extension=str(answer["Extension"]), key=str(answer["Hash"]),
            size=size, width=int(answer["Width"]), height=int(answer["Height"]),
        )


def _answer_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return base64.b64decode(value, validate=True)
