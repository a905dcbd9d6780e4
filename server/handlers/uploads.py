"""Uploads in parts: ``UploadStart``, ``UploadPart``, ``UploadStatus``, ``UploadFinish``.

A file too large for one ``Media`` frame (or one a client wants to resume) is
sent in numbered parts of the size ``UploadStart`` answers.  Parts are staged
on the disk of the node that started the upload (server/uploads.py) and
recorded in PostgreSQL once written, so a client that lost its connection, or
whose server restarted, asks ``UploadStatus`` which parts are missing and sends
only those.  ``UploadFinish`` hashes the staged file, puts it in the blob store
and records it exactly as ``Media`` does (``record_upload``): the answer is the
same ``Key``.

Limits: ``UploadStart`` spends the account's ``--rate-media`` token, its
``--media-quota`` (the whole size, at once, under a lock, so two starts cannot
share the last room) and one of its ``--max-open-uploads``.  Parts have no rate
of their own: each is bounded by its upload (its number and length are fixed
at the start, and an upload takes at most twice its parts in writes), so the
work a client can cause is bounded by what the rate-limited start allowed.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from protocol.requests.media import (
    UPLOAD_FINISH,
    UPLOAD_PART,
    UPLOAD_START,
    UPLOAD_STATUS,
    UploadPart,
    UploadRef,
    UploadStart,
    check_content,
)
from protocol.status import Conflict, NotFound, Unprocessable, ok
from storage import uploads
from storage.db import Transaction
from storage.media import MediaRow
from storage.uploads import UploadRow

from ..media_record import record_upload
from ..routes import Call, route

log = logging.getLogger("sessia.uploads")

UPLOAD_ID_BYTES = 16  # 32 hexadecimal characters
#: The largest part any server accepts (``--upload-part-size`` is at most this).
MAX_PART_SIZE = 16 << 20
NO_UPLOAD = "upload not found (unknown, expired, or not yours)"


@route(UPLOAD_START)
async def start(call: Call) -> dict[str, Any]:
    await call.app.limits.media.check(call.user_id)
    config = call.app.config
    req = UploadStart.parse(call.body, config.max_media_size)
    async with call.app.changes("uploads.start") as ch:
        row, resumed = await uploads.open_upload(
            ch.db,
            upload_id=secrets.token_hex(UPLOAD_ID_BYTES),
            owner_id=call.user_id,
            node=call.app.staging.node,
            extension=req.extension,
            size=req.size,
            part_size=config.upload_part_size,
            sha256=req.sha256,
            ttl=config.upload_ttl,
            quota=config.media_quota,
            max_open=config.max_open_uploads,
        )
    return ok(
        "Upload resumed" if resumed else "Upload started",
        Upload=row.id,
        PartSize=row.part_size,
        Parts=row.parts,
        Resumed=resumed,
    )


@route(UPLOAD_PART)
async def part(call: Call) -> dict[str, Any]:
    req = UploadPart.parse(call.body, MAX_PART_SIZE)
    # The upload's row as this node staged it (a part can only be stored
    # here), else from the database; either way whether it may still take
    # parts (its owner, not expired, not finished) is decided again by the
    # commit that records the part.
    row = call.app.staging.known(req.upload, call.user_id) or await _upload_of(call, req.upload)
    if row.media_key is not None:
        raise Conflict("upload is already finished")
    _staged_here(call, row)
    if req.part >= row.parts:
        raise Unprocessable(f"part: must be below {row.parts} (this upload has {row.parts} parts of {row.part_size} bytes)")
    expected = row.part_length(req.part)
    if len(req.data) != expected:
        raise Unprocessable(f"bytes: part {req.part} must be {expected} bytes, not {len(req.data)}")
    if req.part == 0:
        check_content(row.extension, req.data)  # an "image" that is not one is refused at its first bytes
    app, owner = call.app, call.user_id

    async def record(parts: list[int]) -> bool:
        async with app.changes("uploads.part") as ch:
            return await uploads.record_parts(ch.db, row.id, owner, parts)

    live = await app.staging.store_part(row, req.part, req.data, record)
    if not live:
        raise NotFound(NO_UPLOAD)
    return ok("Part stored", Part=req.part)


@route(UPLOAD_STATUS)
async def status(call: Call) -> dict[str, Any]:
    row = await _upload_of(call, UploadRef.parse(call.body).upload)
    about = {"Upload": row.id, "Size": row.size, "PartSize": row.part_size, "Parts": row.parts}
    if row.media_key is not None:
        return ok("Upload finished", **about, Missing=[], Key=row.media_key)
    missing = await uploads.missing_parts(call.app.db, row)
    return ok("Upload in progress", **about, Missing=missing)


@route(UPLOAD_FINISH)
async def finish(call: Call) -> dict[str, Any]:
    row = await _upload_of(call, UploadRef.parse(call.body).upload)
    if row.media_key is None:
        _staged_here(call, row)
        key = await call.app.staging.finish(row.id, lambda: _store(call, row))
    else:
        key = row.media_key  # finished before: the same key again
    return ok("Media uploaded", Key=key)


async def _store(call: Call, row: UploadRow) -> str:
    """Check every part is in, hash the staged file (a worker thread), put it
    in the blob store, record it: bytes first, row second, as ``Media``."""
    app = call.app
    missing = await uploads.missing_parts(app.db, row)
    if missing:
        raise Conflict(
            f"{len(missing)} of {row.parts} parts are missing (the first is part {missing[0]}): send them and finish again",
            Missing=missing,
        )
    sha256, size = await app.staging.digest(row.id)
    if size != row.size or (row.sha256 is not None and sha256 != row.sha256):
        async with app.changes("uploads.discard") as ch:
            await uploads.discard(ch.db, row.id)
        await app.staging.remove([row.id])
        if size != row.size:
            log.error("upload %s: staged file has %d of %d bytes: parts were lost", row.id, size, row.size)
            raise Conflict("the bytes received were lost on the server: the upload is discarded, start again")
        raise Unprocessable("sha256: the bytes received do not match it: the upload is discarded, start again")
    staged = app.staging.path(row.id)
    await app.blobs.put_file(staged, sha256, size)

    async def mark_finished(tx: Transaction, media_row: MediaRow) -> None:
        if not await uploads.finished(tx, row.id, media_row.key):
            raise NotFound(NO_UPLOAD)  # expired meanwhile: nothing is recorded

    media_row = await record_upload(
        app.changes, app.blobs, owner_id=row.owner_id, extension=row.extension, size=size, sha256=sha256,
        put_again=lambda: app.blobs.put_file(staged, sha256, size), after=mark_finished,
    )
    await app.staging.drop_file(row.id)
    return media_row.key


async def _upload_of(call: Call, upload_id: str) -> UploadRow:
    """The caller's upload, or the same 404 whether it never existed, expired
    or is someone else's: an upload id reveals nothing."""
    row = await uploads.get_upload(call.app.db, upload_id, call.user_id)
    if row is None:
        raise NotFound(NO_UPLOAD)
    return row


def _staged_here(call: Call, row: UploadRow) -> None:
    if row.node != call.app.staging.node:
        raise Conflict("this upload is staged on another server node: send its parts and UploadFinish there")
