"""SDK methods for the media requests (``Media``, ``GetMedia`` by key)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from protocol import requests as R
from protocol.codecs import Codec

from .base import ClientBase


@dataclass(frozen=True, slots=True)
class MediaFile:
    """A downloaded file: its bytes, extension and key."""

    data: bytes
    extension: str
    key: str


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


def _answer_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return base64.b64decode(value, validate=True)
