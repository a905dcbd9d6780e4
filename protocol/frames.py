"""The frame layer: a fixed 14-byte header, then the payload.

    offset size field
    0      2    magic  b"SS"
    2      1    version (1)
    3      1    kind     (FrameKind)
    4      1    codec    (Codec)
    5      1    flags    (0; other values are reserved)
    6      4    request id, unsigned big-endian (0 on pushes)
    10     4    payload length, unsigned big-endian
    14     n    payload

REQUEST and PUSH payloads start with the name: one length byte, then that
many ASCII bytes, then the codec-encoded body.  RESPONSE and ERROR payloads are
the codec-encoded body alone.  PING and PONG have an empty payload.

``Decoder`` is sans-IO: it takes bytes and returns events.  It never raises for
anything the peer sends; bad input becomes a ``FrameError`` event telling the
caller which Status to answer and whether the connection can go on.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NamedTuple, final

from .codecs import Codec, bin_header, encode_body, map_header, map_items
from .status import Status

MAGIC = b"SS"
VERSION = 1
HEADER = struct.Struct(">2sBBBBII")
HEADER_SIZE = HEADER.size  # 14
#: A decoder's receive buffer between frames (``Decoder.get_buffer``).
SCRATCH_SIZE = 256 * 1024
MAX_NAME_LENGTH = 64
DEFAULT_MAX_PAYLOAD = 1 << 20  # 1 MiB for ordinary requests


#: Room beside a media file's bytes in the frames that carry one: the name,
#: ``sessia`` or ``Status`` and the other fields.
MEDIA_FRAME_SLACK = 64 * 1024


def largest_payload(max_media_size: int, codec: int) -> int:
    """The largest frame payload a server with this ``--max-media-size`` sends
    in ``codec`` (and the largest ``Media`` request it reads): a file of the
    largest size, as bytes in msgpack or as base64 text in JSON (4/3 of it),
    plus ``MEDIA_FRAME_SLACK``.  Every other answer is smaller (pages are
    capped: docs/protocol.md, "Limits and timeouts"), so a client that
    accepts frames of this size accepts every frame of that server."""
    data = max_media_size * 4 // 3 if codec == 2 else max_media_size
    return data + MEDIA_FRAME_SLACK


class FrameKind(IntEnum):
    REQUEST = 1
    RESPONSE = 2
    PUSH = 3
    ERROR = 4
    PING = 5
    PONG = 6


NAMED_KINDS = frozenset((FrameKind.REQUEST, FrameKind.PUSH))
_KINDS = {int(k): k for k in FrameKind}
_CODECS = frozenset(int(c) for c in Codec)


@final  # so that ``type(event) is Frame`` also tells mypy the other case is a FrameError
class Frame(NamedTuple):
    """One complete frame.  ``body`` is still encoded: decoding it is the
    caller's step, so a bad body is answered with the request id known.
    A NamedTuple rather than a dataclass: one is built per request, and a
    tuple is several times cheaper to make."""

    kind: FrameKind
    codec: int
    request_id: int
    name: str
    body: bytes | bytearray  # a bytearray when received straight into it (``Decoder`` with ``direct_min``)


@dataclass(frozen=True, slots=True)
class FrameError:
    """The peer sent something that is not a valid frame.

    ``fatal`` means the byte stream can no longer be trusted (bad magic or
    version): answer once and close.  Otherwise the offending frame has been (or
    is being) skipped and the connection goes on.
    """

    request_id: int
    code: int
    message: str
    fatal: bool
    codec: int = Codec.MSGPACK


Event = Frame | FrameError


@functools.lru_cache(maxsize=1024)
def _valid_name(raw: bytes) -> bool:
    return 0 < len(raw) <= MAX_NAME_LENGTH and all(
        48 <= b <= 57 or 65 <= b <= 90 or 97 <= b <= 122 or b in (45, 46, 95) for b in raw
    )


class Decoder:
    """Incremental frame decoder with size limits.

    ``accept`` is the set of kinds this side may receive (a server accepts
    requests and pings).  ``max_payload`` bounds every frame; ``name_limits``
    raises (or lowers) it for named frames, e.g. ``{"Media": 28 << 20}``.  An
    oversized frame is answered as soon as its header (and name) arrive and its
    remaining bytes are discarded unread, so it never sits in memory.

    Bytes are given either by ``feed(data)`` or, for a reader that receives
    into buffers (``asyncio.BufferedProtocol``), by ``get_buffer`` then
    ``buffer_updated(n)``.  With ``direct_min``, a frame whose body is at
    least that long gets a buffer of its exact size as soon as its header is
    in, the bytes after go straight into it, and it becomes the frame's body:
    a large answer (a file's range) is then copied once from the socket
    instead of three times.  That buffer is allocated before the bytes
    arrive, so only a side that trusts its peer's sizes should ask for it
    (the SDK does; a server does not).
    """

    __slots__ = ("_buf", "_skip", "_closed", "accept", "max_payload", "name_limits", "_hard_max", "direct_min",
                 "_direct", "_direct_have", "_direct_frame", "_scratch")

    def __init__(
        self,
        accept: frozenset[FrameKind] | set[FrameKind],
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        name_limits: Mapping[str, int] | None = None,
        direct_min: int = 0,
    ) -> None:
        self._buf = bytearray()
        self._skip = 0
        self._closed = False
        self.accept = frozenset(accept)
        self.max_payload = max_payload
        self.name_limits = dict(name_limits or {})
        self._hard_max = max([max_payload, *self.name_limits.values()])
        self.direct_min = direct_min
        self._direct: bytearray | None = None  # the body being received straight into
        self._direct_have = 0
        self._direct_frame: tuple[FrameKind, int, int, str] = (FrameKind.RESPONSE, 0, 0, "")
        self._scratch: memoryview | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buf) + self._direct_have

    @property
    def pending(self) -> bool:
        """A frame has started but not finished arriving (held or being skipped)."""
        return bool(self._buf) or self._skip > 0 or self._direct is not None

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Where the next received bytes go: the rest of a large frame's body,
        else a scratch buffer; then call ``buffer_updated`` with their count."""
        if self._direct is not None:
            return memoryview(self._direct)[self._direct_have :]
        if self._scratch is None:
            self._scratch = memoryview(bytearray(SCRATCH_SIZE))
        return self._scratch

    def buffer_updated(self, nbytes: int) -> list[Event]:
        """``nbytes`` were received into the last ``get_buffer``."""
        if self._direct is not None:
            self._direct_have += nbytes
            return self._direct_done([]) if self._direct_have == len(self._direct) else []
        assert self._scratch is not None
        return self.feed(self._scratch[:nbytes])

    def _direct_done(self, events: list[Event]) -> list[Event]:
        kind, codec, request_id, name = self._direct_frame
        assert self._direct is not None
        events.append(Frame(kind, codec, request_id, name, self._direct))
        self._direct = None
        self._direct_have = 0
        return events

    def feed(self, data: bytes | memoryview) -> list[Event]:
        if self._closed:
            return []
        events: list[Event] = []
        if self._direct is not None:
            take = min(len(data), len(self._direct) - self._direct_have)
            self._direct[self._direct_have : self._direct_have + take] = data[:take]
            self._direct_have += take
            if self._direct_have < len(self._direct):
                return events
            self._direct_done(events)
            data = data[take:]
            if not data:
                return events
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return events
            data = data[self._skip :]
            self._skip = 0
        buf = self._buf
        buf += data
        pos = 0
        end = len(buf)
        while end - pos >= HEADER_SIZE:
            magic, version, kind, codec, flags, request_id, length = HEADER.unpack_from(buf, pos)
            if magic != MAGIC:
                return self._fatal(events, request_id=0, message="bad magic: not a sessia frame")
            if version != VERSION:
                return self._fatal(events, request_id, f"unsupported protocol version {version}")
            body_start = pos + HEADER_SIZE
            frame_end = body_start + length
            if length > self._hard_max:
                events.append(self._too_large(request_id, codec, length, self._hard_max))
                pos = self._discard(buf, body_start, frame_end)
                continue
            error = None
            if kind not in self.accept:
                error = (Status.BAD_REQUEST, f"unexpected frame kind {kind}")
            elif codec not in _CODECS:
                error = (Status.BAD_REQUEST, f"unknown codec {codec}")
            elif flags:
                error = (Status.BAD_REQUEST, f"unknown flags 0x{flags:02x}")  # as docs/protocol.md writes it
            if error:
                events.append(FrameError(request_id, error[0], error[1], False, _answer_codec(codec)))
                pos = self._discard(buf, body_start, frame_end)
                continue
            name = ""
            name_end = body_start
            if kind in NAMED_KINDS:
                if length == 0:
                    # No room for the name: answer now, not when the next frame's
                    # first byte would be misread as this one's name length.
                    events.append(FrameError(request_id, Status.BAD_REQUEST, "bad request name", False, codec))
                    pos = body_start
                    continue
                if end - body_start < 1:
                    break
                name_len = buf[body_start]
                name_end = body_start + 1 + name_len
                if name_len == 0 or name_len > MAX_NAME_LENGTH or 1 + name_len > length:
                    events.append(FrameError(request_id, Status.BAD_REQUEST, "bad request name", False, codec))
                    pos = self._discard(buf, body_start, frame_end)
                    continue
                if end < name_end:
                    break
                raw_name = bytes(buf[body_start + 1 : name_end])
                if not _valid_name(raw_name):
                    events.append(FrameError(request_id, Status.BAD_REQUEST, "bad request name", False, codec))
                    pos = self._discard(buf, body_start, frame_end)
                    continue
                name = raw_name.decode("ascii")
                limit = self.name_limits.get(name, self.max_payload)
                if length > limit:
                    events.append(self._too_large(request_id, codec, length, limit))
                    pos = self._discard(buf, body_start, frame_end)
                    continue
            elif length > self.max_payload:
                events.append(self._too_large(request_id, codec, length, self.max_payload))
                pos = self._discard(buf, body_start, frame_end)
                continue
            if end < frame_end:
                if self.direct_min and frame_end - name_end >= self.direct_min:
                    # The rest of this body goes straight into its own buffer.
                    self._direct = direct = bytearray(frame_end - name_end)
                    self._direct_have = end - name_end
                    self._direct_frame = (_KINDS[kind], codec, request_id, name)
                    with memoryview(buf) as view:
                        direct[: self._direct_have] = view[name_end:end]
                    pos = end
                break
            with memoryview(buf) as view:  # one copy of the body, not two (a slice, then bytes of it)
                body = bytes(view[name_end:frame_end])
            events.append(Frame(_KINDS[kind], codec, request_id, name, body))
            pos = frame_end
        if pos:
            del buf[:pos]
        return events

    def _discard(self, buf: bytearray, start: int, frame_end: int) -> int:
        """Drop a rejected frame's bytes; the part not yet received is skipped
        as it arrives.  Returns the new parse position."""
        if frame_end <= len(buf):
            return frame_end
        self._skip = frame_end - len(buf)
        return len(buf)

    def _too_large(self, request_id: int, codec: int, length: int, limit: int) -> FrameError:
        return FrameError(
            request_id,
            Status.TOO_LARGE,
            f"frame payload of {length} bytes exceeds the limit of {limit} bytes",
            False,
            _answer_codec(codec),
        )

    def _fatal(self, events: list[Event], request_id: int, message: str) -> list[Event]:
        self._closed = True
        self._buf.clear()
        self._direct = None
        events.append(FrameError(request_id, Status.BAD_REQUEST, message, True))
        return events


def _answer_codec(codec: int) -> int:
    return codec if codec in _CODECS else Codec.MSGPACK


def _header(kind: FrameKind, codec: int, request_id: int, length: int) -> bytes:
    return HEADER.pack(MAGIC, VERSION, kind, codec, 0, request_id, length)


def encode_named(kind: FrameKind, request_id: int, name: str, body: bytes, codec: int) -> bytes:
    raw = name.encode("ascii")
    if not _valid_name(raw):
        raise ValueError(f"invalid frame name {name!r}")
    return b"".join((_header(kind, codec, request_id, 1 + len(raw) + len(body)), bytes((len(raw),)), raw, body))


def encode_request(request_id: int, name: str, body: Mapping[str, Any], codec: int = Codec.MSGPACK) -> bytes:
    return encode_named(FrameKind.REQUEST, request_id, name, encode_body(Codec(codec), dict(body)), codec)


def encode_push(name: str, body: Mapping[str, Any], codec: int = Codec.MSGPACK) -> bytes:
    return encode_named(FrameKind.PUSH, 0, name, encode_body(Codec(codec), dict(body)), codec)


def encode_response(request_id: int, body: Mapping[str, Any], codec: int = Codec.MSGPACK) -> bytes:
    payload = encode_body(Codec(codec), body if isinstance(body, dict) else dict(body))
    return _header(FrameKind.RESPONSE, codec, request_id, len(payload)) + payload


class PreparedResponse:
    """A msgpack RESPONSE frame built around a hole for one bytes field, so
    that a large value (a range of a file) is read straight into the frame
    that carries it: one copy of the bytes instead of the three that reading
    them, encoding the body and prefixing the header would make.

    The bytes of the frame, once ``hole`` is filled and ``finish`` has set
    the request id, are exactly those of ``encode_response`` with the same
    body (fields in the same order).  Only msgpack can carry bytes raw; a
    JSON answer is encoded as usual."""

    __slots__ = ("frame", "hole")

    def __init__(self, body: Mapping[str, Any], field: str, length: int) -> None:
        if field not in body:
            raise ValueError(f"{field!r} is not a field of the body")
        head = [map_header(len(body))]
        rest: list[bytes] = []
        into = head
        for name, value in body.items():
            if name == field:
                head.append(encode_body(Codec.MSGPACK, {name: None})[1:-1] + bin_header(length))  # key, then header
                into = rest
            else:
                into.append(encode_body(Codec.MSGPACK, {name: value})[1:])
        start = HEADER_SIZE + sum(map(len, head))
        frame = bytearray(start + length + sum(map(len, rest)))
        frame[HEADER_SIZE:start] = b"".join(head)
        frame[start + length :] = b"".join(rest)
        self.frame = frame
        self.hole = memoryview(frame)[start : start + length]

    def finish(self, request_id: int) -> bytearray:
        """The whole frame, answering ``request_id``.  The hole is released:
        the frame may be written and must not be changed any more."""
        HEADER.pack_into(self.frame, 0, MAGIC, VERSION, FrameKind.RESPONSE, Codec.MSGPACK, 0, request_id,
                         len(self.frame) - HEADER_SIZE)
        self.hole.release()
        return self.frame


def encode_error(request_id: int, code: int, message: str, codec: int = Codec.MSGPACK) -> bytes:
    payload = encode_body(Codec(codec), {"Status": {"code": int(code), "message": message}})
    return _header(FrameKind.ERROR, codec, request_id, len(payload)) + payload


def encode_ping(request_id: int = 0) -> bytes:
    return _header(FrameKind.PING, Codec.MSGPACK, request_id, 0)


def encode_pong(request_id: int = 0) -> bytes:
    return _header(FrameKind.PONG, Codec.MSGPACK, request_id, 0)


class PushTemplate:
    """One pushed event's frame for many recipients.

    A message to a dialog is pushed to every member with the same body but
    for ``Seq``, which leads it (``{"Seq": n, "Kind": kind, **payload}``): the
    frame's name, the map header, ``Kind`` and the payload are encoded once
    here, and ``frame(seq)`` only encodes the number and joins the parts.  The
    bytes are exactly those of ``encode_push(name, {"Seq": seq, "Kind": kind,
    **payload}, codec)``.
    """

    __slots__ = ("_codec", "_lead", "_head", "_tail", "_fixed")

    def __init__(self, name: str, kind: str, payload: Mapping[str, Any], codec: int = Codec.MSGPACK) -> None:
        raw = name.encode("ascii")
        if not _valid_name(raw):
            raise ValueError(f"invalid frame name {name!r}")
        self._codec = codec = Codec(codec)
        self._lead = bytes((len(raw),)) + raw
        items = map_items(codec, dict(payload))
        if codec == Codec.JSON:
            self._head = b'{"Seq":'
            self._tail = b',"Kind":' + encode_body(codec, {"k": kind})[5:-1] + (b"," + items if items else b"") + b"}"
        else:
            self._head = map_header(2 + len(payload)) + encode_body(codec, {"Seq": 0})[1:5]
            self._tail = encode_body(codec, {"Kind": kind})[1:] + items
        self._fixed = len(self._lead) + len(self._head) + len(self._tail)

    def frame(self, seq: int) -> bytes:
        number = str(seq).encode() if self._codec == Codec.JSON else _packed_int(seq)
        return b"".join((
            HEADER.pack(MAGIC, VERSION, FrameKind.PUSH, self._codec, 0, 0, self._fixed + len(number)),
            self._lead, self._head, number, self._tail,
        ))


def _packed_int(value: int) -> bytes:
    """A non-negative integer as msgpack writes it (the smallest form)."""
    if value < 0x80:
        return bytes((value,))
    if value <= 0xFF:
        return b"\xcc" + value.to_bytes(1, "big")
    if value <= 0xFFFF:
        return b"\xcd" + value.to_bytes(2, "big")
    if value <= 0xFFFFFFFF:
        return b"\xce" + value.to_bytes(4, "big")
    return b"\xcf" + value.to_bytes(8, "big")
