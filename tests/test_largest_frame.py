"""The largest frame a client must accept (docs/protocol.md, "Limits and
timeouts"): a ``GetMedia`` answer of the largest file sent whole, in each
codec, fits the stated maximum.  The real server, raw frames, the default
``--max-inline-media`` (20 MiB; larger files are sent in ranges of at most
1 MiB, smaller answers)."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest

from protocol.codecs import Codec, decode_body
from protocol.frames import HEADER, HEADER_SIZE, FrameKind, encode_request, largest_payload
from server.config import Config

MAX_MEDIA = Config().inline_media_limit  # the shared server runs with the default


def test_the_stated_numbers_are_the_code_s() -> None:
    """docs/protocol.md quotes these two numbers for the default settings."""
    assert largest_payload(MAX_MEDIA, Codec.MSGPACK) == 21_037_056
    assert largest_payload(MAX_MEDIA, Codec.JSON) == 28_027_562 == Config().max_media_frame
    assert largest_payload(MAX_MEDIA, Codec.JSON) == Config().max_answer_frame(Codec.JSON)


@pytest.mark.parametrize("codec", [Codec.MSGPACK, Codec.JSON], ids=["msgpack", "json"])
async def test_the_largest_media_item_fits_the_stated_maximum(server, user, codec: Codec) -> None:
    alice = await user()
    data = os.urandom(MAX_MEDIA)  # random bytes: nothing compresses, base64 is exactly 4/3
    uploaded = await alice.request("Media", {"extension": "zip", "bytes": data})
    reader, writer = await asyncio.open_connection(server.host, server.port, limit=1 << 16)
    try:
        writer.write(encode_request(7, "GetMedia", {"hash": uploaded["Key"], "sessia": alice.sessia()}, codec))
        await writer.drain()
        header = await asyncio.wait_for(reader.readexactly(HEADER_SIZE), 60)
        _, _, kind, frame_codec, _, request_id, length = HEADER.unpack(header)
        payload = await asyncio.wait_for(reader.readexactly(length), 60)
    finally:
        writer.close()
    assert (kind, frame_codec, request_id) == (FrameKind.RESPONSE, codec, 7)
    answer = decode_body(codec, payload)
    assert answer["Status"]["code"] == 200
    got = answer["BytesBase64"]
    assert (base64.b64decode(got) if codec == Codec.JSON else got) == data
    # It is the largest there is (the file's bytes alone are most of it) and within the bound.
    assert len(data) < length <= largest_payload(MAX_MEDIA, codec)
