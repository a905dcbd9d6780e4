"""SDK methods for the media requests: ``Media`` and ``GetMedia`` (whole or by
range), the upload in parts (``UploadStart``, ``UploadPart``, ``UploadStatus``,
``UploadFinish``), and the two that put them together for a file on disk and
resume: ``upload_file`` and ``download_file``; and ``get_thumbnail``
(``GetMedia`` with ``thumb``)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from protocol import requests as R
from protocol.codecs import Codec
from protocol.requests.media import MAX_RANGE, UPLOAD_FINISH, UPLOAD_PART, UPLOAD_START, UPLOAD_STATUS
from protocol.status import NotFound

from .base import ClientBase

#: ``progress(done, total)``: bytes transferred so far (those already on the
#: other side when resuming included) and the file's size.
Progress = Callable[[int, int], None]
#: Bytes read at a time when hashing a file before an upload.
HASH_CHUNK = 1 << 20


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


@dataclass(frozen=True, slots=True)
class MediaRange:
    """Bytes of a file from ``offset`` (``GetMedia`` with a range), and the
    file's whole ``size``."""

    data: bytes
    offset: int
    size: int
    extension: str
    key: str


@dataclass(frozen=True, slots=True)
class UploadTicket:
    """``UploadStart``'s answer: the upload's id, its part size and number of
    parts, and whether it is an unfinished upload of the same file resumed."""

    upload: str
    part_size: int
    parts: int
    resumed: bool


@dataclass(frozen=True, slots=True)
class UploadState:
    """``UploadStatus``'s answer: the parts the server still needs, and the
    key once the upload is finished."""

    upload: str
    size: int
    part_size: int
    parts: int
    missing: tuple[int, ...]
    key: str | None


@dataclass(frozen=True, slots=True)
class DownloadedFile:
    """``download_file``'s result: where the file is, its size and type."""

    path: Path
    size: int
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

    async def get_media_range(self, key: str, offset: int, limit: int = MAX_RANGE) -> MediaRange:
        """Up to ``limit`` bytes (at most 1 MiB) of the file ``key`` from
        ``offset``; fewer at its end, none at its very end.
        ``RangeNotSatisfiable`` past the end."""
        answer = await self.request(R.GET_MEDIA, {"hash": key, "offset": offset, "limit": limit})
        return MediaRange(
            data=_answer_bytes(answer["BytesBase64"]), offset=int(answer["Offset"]), size=int(answer["Size"]),
            extension=str(answer["Extension"]), key=str(answer["Hash"]),
        )

    # -- uploads in parts ------------------------------------------------------------------

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

    async def start_upload(self, size: int, extension: str, sha256: bytes | None = None) -> UploadTicket:
        """Open an upload of ``size`` bytes (or resume the unfinished one of
        the same ``sha256``)."""
        body: dict[str, Any] = {"size": size, "extension": extension}
        if sha256 is not None:
            body["sha256"] = sha256.hex()
        answer = await self.request(UPLOAD_START, body)
        return UploadTicket(
            upload=str(answer["Upload"]), part_size=int(answer["PartSize"]), parts=int(answer["Parts"]),
            resumed=bool(answer["Resumed"]),
        )

    async def upload_part(self, upload: str, part: int, data: bytes) -> None:
        """Send part ``part`` (from 0); sending it again is harmless."""
        await self.request(UPLOAD_PART, {"upload": upload, "part": part, "bytes": self._wire_bytes(data)})

    async def upload_status(self, upload: str) -> UploadState:
        """Which parts the server still needs (and the key, once finished)."""
        answer = await self.request(UPLOAD_STATUS, {"upload": upload})
        key = answer.get("Key")
        return UploadState(
            upload=str(answer["Upload"]), size=int(answer["Size"]), part_size=int(answer["PartSize"]),
            parts=int(answer["Parts"]), missing=tuple(int(p) for p in answer["Missing"]),
            key=str(key) if key else None,
        )

    async def finish_upload(self, upload: str) -> str:
        """Finish an upload whose parts are all sent; returns the file's key
        (the same key again if it was finished before)."""
        answer = await self.request(UPLOAD_FINISH, {"upload": upload})
        return str(answer["Key"])

    async def upload_file(
        self,
        path: str | os.PathLike[str],
        extension: str | None = None,
        *,
        progress: Progress | None = None,
        parallel: int = 4,
        check: bool = True,
    ) -> str:
        """Upload the file at ``path`` in parts, ``parallel`` at a time, and
        return its key.  ``extension`` defaults to the file name's.

        Resumes: after a dropped connection, ``reconnect()`` and call it
        again: the upload this client started for the same file (same path,
        size and modification time) continues with the parts the server does
        not have.  With ``check`` (the default) the file's SHA-256 is sent
        too: the server then verifies the bytes it assembled, and a new
        client (another process) resumes the same file's unfinished upload."""
        file = Path(path)
        stat = await asyncio.to_thread(file.stat)
        ext = extension or file.suffix.lstrip(".")
        memo = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
        state: UploadState | None = None
        upload = self._uploads.get(memo)
        if upload is not None:
            try:
                state = await self.upload_status(upload)
            except NotFound:
                state = None
        if state is None:
            sha256 = await asyncio.to_thread(_file_sha256, file) if check else None
            ticket = await self.start_upload(stat.st_size, ext, sha256)
            upload = ticket.upload
            self._uploads[memo] = upload
            if ticket.resumed:
                state = await self.upload_status(upload)
            else:
                state = UploadState(upload, stat.st_size, ticket.part_size, ticket.parts, tuple(range(ticket.parts)), None)
        if state.key is None:
            await self._send_parts(file, state, progress, max(1, parallel))
            key = await self.finish_upload(state.upload)
        else:
            key = state.key
        self._uploads.pop(memo, None)
        if progress is not None:
            progress(state.size, state.size)
        return key

    async def _send_parts(self, file: Path, state: UploadState, progress: Progress | None, parallel: int) -> None:
        def length(part: int) -> int:
            return min(state.part_size, state.size - part * state.part_size)

        done = state.size - sum(length(p) for p in state.missing)
        if progress is not None:
            progress(done, state.size)
        todo = iter(state.missing)
        fd = await asyncio.to_thread(os.open, file, os.O_RDONLY)

        async def worker() -> None:
            nonlocal done
            for part in todo:
                data = await asyncio.to_thread(os.pread, fd, length(part), part * state.part_size)
                if len(data) != length(part):
                    raise OSError(f"{file} changed while it was being uploaded")
                await self.upload_part(state.upload, part, data)
                done += len(data)
                if progress is not None:
                    progress(done, state.size)

        try:
            await _all(worker() for _ in range(min(parallel, len(state.missing)) or 1))
        finally:
            os.close(fd)

    async def download_file(
        self,
        key: str,
        path: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
        parallel: int = 4,
    ) -> DownloadedFile:
        """Download the file ``key`` to ``path`` in ranges, ``parallel`` at a
        time.  The bytes go to ``path`` + ``.part`` first, in order, and the
        file is renamed to ``path`` when whole: after a dropped connection,
        ``reconnect()`` and call it again to continue from the bytes already
        in the ``.part`` file."""
        target = Path(path)
        partial = target.with_name(target.name + ".part")
        have = await asyncio.to_thread(_size_or_zero, partial)
        head = await self.get_media_range(key, 0, 0)
        size = head.size
        if have > size:
            have = 0
        with open(partial, "r+b" if have else "wb") as out:  # opening is instant; writes go to a thread
            out.truncate(have)
            out.seek(have)
            if progress is not None:
                progress(have, size)
            window: list[asyncio.Task[MediaRange]] = []
            offsets = iter(range(have, size, MAX_RANGE))
            try:
                for offset in offsets:
                    window.append(asyncio.ensure_future(self.get_media_range(key, offset)))
                    if len(window) < max(1, parallel):
                        continue
                    have = await _write_next(window, out, have, size, progress)
                while window:
                    have = await _write_next(window, out, have, size, progress)
            finally:
                for task in window:
                    task.cancel()
            await asyncio.to_thread(out.flush)
        await asyncio.to_thread(os.replace, partial, target)
        return DownloadedFile(path=target, size=size, extension=head.extension, key=key)


async def _write_next(
    window: list[asyncio.Task[MediaRange]], out: Any, have: int, size: int, progress: Progress | None
) -> int:
    """Wait for the oldest range of the window and append it to ``out``."""
    got = await window.pop(0)
    if got.offset != have or (not got.data and have < size):
        raise OSError(f"range at {got.offset} arrived where {have} was expected")
    await asyncio.to_thread(out.write, got.data)
    have += len(got.data)
    if progress is not None:
        progress(have, size)
    return have


async def _all(coros: Any) -> None:
    """Run the workers; the first failure cancels the others and is raised."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _file_sha256(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.digest()


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _answer_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return base64.b64decode(value, validate=True)
