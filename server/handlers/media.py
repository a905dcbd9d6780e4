"""Media: upload a file in one frame (``Media``) and download one by key,
whole or by range (``GetMedia``), or a thumbnail of an image (``GetMedia``
with ``thumb``: server/thumbnails.py).  Uploads in parts are in uploads.py;
both kinds of upload end in ``record_upload`` (server/media_record.py).

Uploads are content-addressed in the blob store (storage/blobs.py) and recorded in
PostgreSQL under a random, opaque key.  A download is allowed to the uploader,
to members of a dialog where the file is attached, and to anyone for profile
and dialog photos; everyone else gets the same 404 as for a key that does not
exist, so a key's existence is never revealed.
"""

from __future__ import annotations

import logging
from typing import Any

from protocol.codecs import Codec
from protocol.frames import PreparedResponse
from protocol.requests import GET_MEDIA, MEDIA
from protocol.requests.media import (
    IMAGE_MAGIC,
    MediaDownload,
    MediaUpload,
    has_thumbnails,
    wanted_thumb,
    wants_dialog_listing,
)
from protocol.status import InternalError, NotFound, RangeNotSatisfiable, TooLarge, Unavailable, Unprocessable, ok
from storage import media, uploads
from storage.db import Transaction
from storage.errors import BlobMissing
from storage.media import MediaRow

from ..imaging import Refused
from ..media_record import record_upload
from ..routes import Call, route
from ..thumb_pool import PoolStopped
from .dialogs import dialog_media

log = logging.getLogger("sessia.media")


@route(MEDIA)
async def upload(call: Call) -> dict[str, Any]:
    await call.app.limits.media.check(call.user_id)
    config = call.app.config
    req = MediaUpload.parse(call.body, config.inline_media_limit)
    # Bytes first, row second (server/media_record.py).
    sha256 = await call.app.blobs.put_bytes(req.data)

    async def quota(tx: Transaction) -> None:
        await uploads.ensure_room(tx, call.user_id, len(req.data), config.media_quota)

    row = await record_upload(
        call.app.changes, call.app.blobs, owner_id=call.user_id, extension=req.extension, size=len(req.data),
        sha256=sha256, put_again=lambda: call.app.blobs.put_bytes(req.data), before=quota,
    )
    return ok("Media uploaded", Key=row.key)


@route(GET_MEDIA)
async def get_media(call: Call) -> dict[str, Any] | PreparedResponse:
    if wants_dialog_listing(call.body):
        return await dialog_media(call)  # the listing belongs to the dialogs area
    req = MediaDownload.parse(call.body)
    thumb = wanted_thumb(call.body)
    if thumb is not None and req.offset is not None:
        raise Unprocessable("thumb: a thumbnail is sent whole, not by range (offset, limit)")
    row = await media.visible_to(call.app.db, req.key, call.user_id)
    if row is None:
        raise NotFound("media not found")
    if thumb is not None:
        return await send_thumbnail(call, row, thumb)
    if req.offset is not None and req.limit is not None:
        return await _send_range(call, row, req.offset, req.limit)
    whole = call.app.config.inline_media_limit
    if row.size > whole:
        raise TooLarge(
            f"the file is {row.size} bytes, more than the {whole} sent whole: ask for ranges (offset, limit)",
            Size=row.size,
        )
    # The file is read only when the connection has room for its answer: a
    # client that pipelines downloads and does not read them gets them one
    # bound's worth at a time, not all read into memory at once.
    return await _send_bytes(call, row, 0, row.size)


async def _send_range(call: Call, row: MediaRow, offset: int, limit: int) -> dict[str, Any] | PreparedResponse:
    """Up to ``limit`` bytes from ``offset``: fewer at the end of the file,
    none at its very end; past it, 416.  Room is taken as for a whole file,
    so ranges pipelined and left unread are read a bound's worth at a time."""
    if offset > row.size:
        raise RangeNotSatisfiable(f"offset {offset} is past the end of the file ({row.size} bytes)", Size=row.size)
    return await _send_bytes(call, row, offset, min(limit, row.size - offset), Offset=offset, Size=row.size)


async def _send_bytes(
    call: Call, row: MediaRow, offset: int, length: int, **fields: int
) -> dict[str, Any] | PreparedResponse:
    """The answer carrying ``length`` bytes of the file from ``offset``, once
    the connection has room for it.  In msgpack the bytes are read from the
    store straight into the answer's frame (one buffer of their size); in
    JSON they are read, then encoded as base64 into the frame: both counted."""
    raw = call.codec == Codec.MSGPACK
    async with call.conn.answer_room(answer_size(length, call.codec) * (1 if raw else 2)):
        body = ok("Media sent", BytesBase64=b"", Extension=row.extension, Hash=row.key, **fields)
        answer: dict[str, Any] | PreparedResponse
        if raw:
            answer = PreparedResponse(body, "BytesBase64", length)
            into = answer.hole
        else:
            answer = body
            into = memoryview(bytearray(length))
            body["BytesBase64"] = into.obj
        try:
            got = await call.app.blobs.read_range_into(row.sha256, offset, into) if length else 0
        except BlobMissing:
            raise _missing(row) from None
        if got != length:
            log.error("media %s: file %s is shorter than its %d bytes", row.key, row.sha256.hex(), row.size)
            raise InternalError("media file is damaged on the server")
        return answer


async def send_thumbnail(call: Call, row: media.MediaRow, tag: str) -> dict[str, Any]:
    """The thumbnail ``tag`` of ``row``, which the caller may see (the same
    rule as the file: whoever may see an image may see its thumbnails)."""
    if not has_thumbnails(row.extension):
        raise Unprocessable(f"thumb: only images have thumbnails ({', '.join(IMAGE_MAGIC)}), not {row.extension}")
    for _ in range(2):  # again once if the thumbnail's blob went missing: it is made anew
        try:
            thumb = await call.app.thumbnails.find(row, tag)
        except Refused as exc:
            raise Unprocessable(f"no thumbnail: {exc.reason}") from None
        except PoolStopped:
            raise Unavailable("server is stopping: try again") from None
        assert thumb.sha256 is not None and thumb.size is not None
        size = answer_size(thumb.size, call.codec)
        async with call.conn.answer_room(size):
            try:
                data = await call.app.blobs.read(thumb.sha256)
            except BlobMissing:
                log.warning("media %s: thumbnail %s is missing from the store: making it again", row.key, tag)
                await call.app.thumbnails.forget(row)
                continue
        return ok("Thumbnail sent", BytesBase64=data, Extension=thumb.extension, Hash=row.key, Thumb=tag,
                  Width=thumb.width, Height=thumb.height)
    raise InternalError("thumbnail is missing on the server")


def _missing(row: MediaRow) -> InternalError:
    log.error("media %s: file %s is missing from the store", row.key, row.sha256.hex())
    return InternalError("media file is missing on the server")


def answer_size(file_size: int, codec: int) -> int:
    """Bytes of a ``GetMedia`` answer: the file, base64-encoded in JSON, plus
    the frame and the other fields."""
    return (file_size * 4 // 3 if codec == Codec.JSON else file_size) + 1024

