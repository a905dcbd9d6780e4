"""The wire format without a server: the sans-IO decoder, the encoders, the
body codecs and the ``Fields`` view, property-tested with hypothesis.

What these tests hold the code to is ``docs/protocol.md``: a frame decodes the
same however the byte stream is cut, nothing a peer sends makes the decoder
raise, size limits are enforced before a payload is buffered, and every
rejection is a precise Status.
"""

from __future__ import annotations

import base64
import os
import re
import struct
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from protocol.codecs import Codec, decode_body, encode_body
from protocol.fields import INT64_MAX, Fields
from protocol.frames import (
    HEADER,
    HEADER_SIZE,
    MAGIC,
    MAX_NAME_LENGTH,
    VERSION,
    Decoder,
    Frame,
    FrameError,
    FrameKind,
    PreparedResponse,
    encode_error,
    encode_named,
    encode_ping,
    encode_pong,
    encode_push,
    encode_request,
    encode_response,
)
from protocol.status import BadRequest, SessiaError, TooLarge, Unprocessable

ALL_KINDS = frozenset(FrameKind)
SERVER_KINDS = frozenset((FrameKind.REQUEST, FrameKind.PING))
ROOT = Path(__file__).resolve().parent.parent

# -- strategies ------------------------------------------------------------------------

NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"
names = st.text(NAME_CHARS, min_size=1, max_size=MAX_NAME_LENGTH)
request_ids = st.integers(0, 0xFFFFFFFF)
codecs = st.sampled_from([Codec.MSGPACK, Codec.JSON])


def values(*, binary: bool) -> st.SearchStrategy[Any]:
    """Anything one codec carries unchanged (msgpack: also bytes and uint64)."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(-(1 << 63), (1 << 64) - 1 if binary else (1 << 63) - 1)
        | st.floats(allow_nan=False, allow_infinity=binary)  # JSON has no Infinity
        | st.text(max_size=40)
    )
    if binary:
        scalars = scalars | st.binary(max_size=40)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=10,
    )


def bodies(codec: int) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.text(max_size=12), values(binary=codec == Codec.MSGPACK), max_size=4)


@st.composite
def codec_and_body(draw) -> tuple[int, dict[str, Any]]:
    codec = draw(codecs)
    return codec, draw(bodies(codec))


@st.composite
def any_frame(draw) -> tuple[bytes, Frame]:
    """Encoded bytes of a valid frame of any kind, and the Frame they decode to."""
    kind = draw(st.sampled_from(list(FrameKind)))
    codec, body = draw(codec_and_body())
    rid = draw(request_ids)
    name = draw(names)
    if kind == FrameKind.REQUEST:
        data = encode_request(rid, name, body, codec)
    elif kind == FrameKind.PUSH:
        data = encode_push(name, body, codec)
        rid = 0
    elif kind == FrameKind.RESPONSE:
        data = encode_response(rid, body, codec)
    elif kind == FrameKind.ERROR:
        data = encode_error(rid, 404, "Not found", codec)
    elif kind == FrameKind.PING:
        return encode_ping(rid), Frame(kind, Codec.MSGPACK, rid, "", b"")
    else:
        return encode_pong(rid), Frame(kind, Codec.MSGPACK, rid, "", b"")
    payload = data[HEADER_SIZE:]
    if kind in (FrameKind.REQUEST, FrameKind.PUSH):
        payload = payload[1 + len(name) :]
    else:
        name = ""
    return data, Frame(kind, codec, rid, name, payload)


def header(kind: int, request_id: int, length: int, *, codec: int = Codec.MSGPACK, flags: int = 0,
           magic: bytes = MAGIC, version: int = VERSION) -> bytes:
    return HEADER.pack(magic, version, kind, codec, flags, request_id, length)


def feed_chunks(decoder: Decoder, data: bytes, cuts: list[int]) -> list[Frame | FrameError]:
    events: list[Frame | FrameError] = []
    last = 0
    for cut in sorted(set(cuts)) + [len(data)]:
        events += decoder.feed(data[last:cut])
        last = cut
    return events


# -- round trips -------------------------------------------------------------------------


def test_header_layout():
    data = encode_request(0x01020304, "Auth", {}, Codec.MSGPACK)
    assert HEADER_SIZE == 14
    assert data[:14] == b"SS\x01\x01\x01\x00\x01\x02\x03\x04\x00\x00\x00\x06"
    assert data[14:] == b"\x04Auth\x80"
    assert encode_ping(7) == b"SS\x01\x05\x01\x00\x00\x00\x00\x07\x00\x00\x00\x00"
    assert encode_pong(7) == b"SS\x01\x06\x01\x00\x00\x00\x00\x07\x00\x00\x00\x00"


@settings(max_examples=150)
@given(any_frame())
def test_every_frame_round_trips(case):
    data, expected = case
    (frame,) = Decoder(ALL_KINDS).feed(data)
    assert frame == expected


@settings(max_examples=150)
@given(codec_and_body(), request_ids, names)
def test_bodies_round_trip_through_both_codecs(case, rid, name):
    codec, body = case
    (request,) = Decoder(SERVER_KINDS).feed(encode_request(rid, name, body, codec))
    assert (request.kind, request.request_id, request.name, request.codec) == (FrameKind.REQUEST, rid, name, codec)
    assert decode_body(request.codec, request.body) == body
    (answer,) = Decoder(ALL_KINDS).feed(encode_response(rid, body, codec))
    assert decode_body(answer.codec, answer.body) == body


def test_json_carries_bytes_as_base64_and_msgpack_as_bin():
    body = {"bytes": b"\x00\xffhi"}
    assert orjson.loads(encode_body(Codec.JSON, body)) == {"bytes": base64.b64encode(b"\x00\xffhi").decode()}
    assert encode_body(Codec.MSGPACK, body) == b"\x81\xa5bytes\xc4\x04\x00\xffhi"
    assert msgpack.unpackb(encode_body(Codec.MSGPACK, body)) == body


def test_error_frames_carry_a_status_body():
    (frame,) = Decoder(ALL_KINDS).feed(encode_error(9, 413, "too big", Codec.JSON))
    assert (frame.kind, frame.request_id, frame.codec) == (FrameKind.ERROR, 9, Codec.JSON)
    assert orjson.loads(frame.body) == {"Status": {"code": 413, "message": "too big"}}


@pytest.mark.parametrize("name", ["", "a" * 65, "a b", "Auth\n", "Ä", "a/b"])
def test_encoder_refuses_invalid_names(name):
    with pytest.raises(ValueError):
        encode_named(FrameKind.REQUEST, 1, name, b"", Codec.MSGPACK)


def test_longest_name_is_accepted():
    name = "N" * MAX_NAME_LENGTH
    (frame,) = Decoder(SERVER_KINDS).feed(encode_request(1, name, {}))
    assert frame.name == name


# -- chunking -----------------------------------------------------------------------------


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(any_frame(), min_size=1, max_size=4), st.data())
def test_any_chunking_yields_the_same_events(frames, data):
    stream = b"".join(f for f, _ in frames)
    expected = [frame for _, frame in frames]
    assert Decoder(ALL_KINDS).feed(stream) == expected
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    decoder = Decoder(ALL_KINDS)
    assert feed_chunks(decoder, stream, cuts) == expected
    assert not decoder.pending and decoder.buffered == 0


def received(decoder: Decoder, stream: bytes, cuts: list[int]) -> list:
    """``stream`` given as a BufferedProtocol gives it: into ``get_buffer``,
    at most what each buffer takes, in pieces ending at ``cuts``."""
    events: list = []
    pos = 0
    for stop in [*sorted(set(cuts)), len(stream)]:
        while pos < stop:
            into = decoder.get_buffer(-1)
            n = min(len(into), stop - pos)
            into[:n] = stream[pos : pos + n]
            events += decoder.buffer_updated(n)
            pos += n
    return events


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(any_frame(), min_size=1, max_size=4), st.data(), st.sampled_from([0, 1, 16, 1000]))
def test_bytes_received_into_the_decoders_buffers_yield_the_same_events(frames, data, direct_min):
    """Through ``get_buffer``/``buffer_updated`` as through ``feed``, with or
    without bodies received straight into their own buffer, whatever the
    chunking: the same events."""
    stream = b"".join(f for f, _ in frames)
    expected = [frame for _, frame in frames]
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    decoder = Decoder(ALL_KINDS, direct_min=direct_min)
    assert received(decoder, stream, cuts) == expected
    assert not decoder.pending and decoder.buffered == 0
    assert feed_chunks(Decoder(ALL_KINDS, direct_min=direct_min), stream, cuts) == expected


def test_a_large_body_is_received_straight_into_its_own_buffer():
    data = os.urandom(300_000)
    stream = encode_response(7, {"BytesBase64": data}) + encode_pong(8)
    decoder = Decoder(ALL_KINDS, direct_min=1000)
    assert decoder.feed(stream[:5000]) == []
    into = decoder.get_buffer(-1)
    assert len(into) == len(stream) - 5000 - len(encode_pong(8))  # exactly the rest of the body
    assert decoder.buffered == 5000 - HEADER_SIZE and decoder.pending
    into[:] = stream[5000 : 5000 + len(into)]
    (frame,) = decoder.buffer_updated(len(into))
    assert isinstance(frame.body, bytearray) and decode_body(Codec.MSGPACK, frame.body) == {"BytesBase64": data}
    assert frame.request_id == 7 and not decoder.pending
    assert [f.kind for f in received(decoder, encode_pong(8), [])] == [FrameKind.PONG]


def test_every_split_point_and_byte_by_byte():
    stream = (
        encode_request(1, "Auth", {"email": "a@b.c", "password": "x"})
        + encode_ping(2)
        + encode_request(3, "Nope", {"k": b"\x00" * 3})
        + header(FrameKind.REQUEST, 4, 5, flags=1) + b"\x04Auth"
        + encode_request(5, "GetUser", {"id": 1}, Codec.JSON)
    )
    expected = Decoder(SERVER_KINDS).feed(stream)
    assert [(type(e).__name__, e.request_id) for e in expected] == [
        ("Frame", 1), ("Frame", 2), ("Frame", 3), ("FrameError", 4), ("Frame", 5)
    ]
    for cut in range(len(stream) + 1):
        assert feed_chunks(Decoder(SERVER_KINDS), stream, [cut]) == expected
    assert feed_chunks(Decoder(SERVER_KINDS), stream, list(range(len(stream)))) == expected


@settings(max_examples=60)
@given(any_frame())
def test_truncated_frame_yields_nothing_until_completed(case):
    data, expected = case
    decoder = Decoder(ALL_KINDS)
    for i in range(len(data) - 1):
        assert decoder.feed(data[i : i + 1]) == []
        assert decoder.pending
    assert decoder.feed(data[-1:]) == [expected]
    assert not decoder.pending


# -- hostile input -----------------------------------------------------------------------


def _check_events(events: list[Any]) -> None:
    for event in events:
        assert isinstance(event, (Frame, FrameError))
        if isinstance(event, FrameError):
            assert event.code in (400, 413)
            assert event.codec in (Codec.MSGPACK, Codec.JSON)


@settings(max_examples=500)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=10))
def test_arbitrary_bytes_never_raise(data, cuts):
    decoder = Decoder(SERVER_KINDS, max_payload=64, name_limits={"Media": 128})
    _check_events(feed_chunks(decoder, data, cuts))


@settings(max_examples=500)
@given(
    st.integers(0, 255), st.integers(0, 255), st.integers(0, 255), request_ids,
    st.integers(0, 0xFFFFFFFF) | st.integers(0, 200), st.binary(max_size=300), st.lists(st.integers(0, 320), max_size=8),
)
def test_arbitrary_bytes_after_a_valid_magic_and_version_never_raise(kind, codec, flags, rid, length, rest, cuts):
    data = header(kind, rid, length, codec=codec, flags=flags) + rest
    decoder = Decoder(SERVER_KINDS, max_payload=64, name_limits={"Media": 128})
    events = feed_chunks(decoder, data, cuts)
    _check_events(events)
    # An error is about the frame that caused it.
    if events:
        assert events[0].request_id == rid
    # The decoder never holds more than one frame's worth, whatever it is sent.
    assert decoder.buffered <= HEADER_SIZE + 128


@settings(max_examples=300)
@given(st.binary(max_size=200), codecs)
def test_decode_body_raises_only_bad_request(data, codec):
    try:
        body = decode_body(codec, data)
    except BadRequest as exc:
        assert exc.code == 400
    else:
        assert isinstance(body, dict) and all(isinstance(k, str) for k in body)


# -- size limits --------------------------------------------------------------------------


def test_oversized_unnamed_frame_is_refused_right_after_its_header():
    decoder = Decoder(SERVER_KINDS, max_payload=100)
    (error,) = decoder.feed(header(FrameKind.PING, 8, 101))
    assert error == FrameError(8, 413, "frame payload of 101 bytes exceeds the limit of 100 bytes", False)
    # Its payload is skipped as it arrives, never buffered; then decoding goes on.
    for _ in range(101):
        assert decoder.feed(b"\x00") == []
        assert decoder.buffered == 0
    assert decoder.feed(encode_ping(9)) == [Frame(FrameKind.PING, Codec.MSGPACK, 9, "", b"")]


def test_oversized_request_is_refused_once_its_name_is_known():
    decoder = Decoder(SERVER_KINDS, max_payload=100, name_limits={"Media": 5000})
    assert decoder.feed(header(FrameKind.REQUEST, 8, 1000, codec=Codec.JSON)) == []
    assert decoder.feed(b"\x04Au") == []
    (error,) = decoder.feed(b"th")
    assert error == FrameError(8, 413, "frame payload of 1000 bytes exceeds the limit of 100 bytes", False, Codec.JSON)
    assert decoder.feed(b"\x00" * 995) == []
    assert decoder.buffered == 0
    (frame,) = decoder.feed(encode_request(9, "Auth", {}))
    assert (frame.request_id, frame.name) == (9, "Auth")


def test_frames_over_every_limit_are_refused_before_the_name():
    decoder = Decoder(SERVER_KINDS, max_payload=100, name_limits={"Media": 1000})
    (error,) = decoder.feed(header(FrameKind.REQUEST, 3, 1001))
    assert error.code == 413 and error.message.endswith("exceeds the limit of 1000 bytes")
    assert decoder.feed(b"x" * 1001) == []
    assert decoder.feed(encode_ping(4))[0].request_id == 4


def test_per_name_limits():
    decoder = Decoder(SERVER_KINDS, max_payload=100, name_limits={"Media": 1000})
    big = {"bytes": b"\x00" * 500}
    (media,) = decoder.feed(encode_request(1, "Media", big))
    assert media.name == "Media" and decode_body(media.codec, media.body) == big
    (refused,) = decoder.feed(encode_request(2, "Auth", big))
    assert (refused.code, refused.request_id) == (413, 2)
    assert refused.message.endswith("exceeds the limit of 100 bytes")
    (after,) = decoder.feed(encode_request(3, "Auth", {}))
    assert after.request_id == 3


@given(st.integers(0, 300))
def test_payload_limit_is_inclusive(length):
    decoder = Decoder(SERVER_KINDS, max_payload=150)
    events = decoder.feed(header(FrameKind.PING, 1, length) + b"\x00" * length)
    assert len(events) == 1
    assert isinstance(events[0], Frame) == (length <= 150)


# -- header errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "rid", "message"),
    [
        (header(FrameKind.PING, 5, 0, magic=b"GE"), 0, "bad magic: not a sessia frame"),
        (header(FrameKind.PING, 5, 0, version=0), 5, "unsupported protocol version 0"),
        (header(FrameKind.PING, 5, 0, version=2), 5, "unsupported protocol version 2"),
    ],
)
def test_bad_magic_or_version_is_fatal(data, rid, message):
    decoder = Decoder(SERVER_KINDS)
    before = encode_ping(1)
    events = decoder.feed(before + data + encode_ping(2))
    assert events == [Frame(FrameKind.PING, Codec.MSGPACK, 1, "", b""), FrameError(rid, 400, message, True)]
    assert decoder.closed and not decoder.pending
    assert decoder.feed(encode_ping(3)) == []


@pytest.mark.parametrize(
    ("data", "message", "codec"),
    [
        (header(FrameKind.RESPONSE, 5, 1) + b"\x80", "unexpected frame kind 2", Codec.MSGPACK),
        (header(FrameKind.PUSH, 5, 5) + b"\x04Auth", "unexpected frame kind 3", Codec.MSGPACK),
        (header(0, 5, 0), "unexpected frame kind 0", Codec.MSGPACK),
        (header(200, 5, 3, codec=Codec.JSON) + b"abc", "unexpected frame kind 200", Codec.JSON),
        (header(FrameKind.REQUEST, 5, 5, codec=0) + b"\x04Auth", "unknown codec 0", Codec.MSGPACK),
        (header(FrameKind.REQUEST, 5, 5, codec=3) + b"\x04Auth", "unknown codec 3", Codec.MSGPACK),
        (header(FrameKind.REQUEST, 5, 5, flags=2) + b"\x04Auth", "unknown flags 0x02", Codec.MSGPACK),
        (header(FrameKind.PING, 5, 0, flags=0xFF, codec=Codec.JSON), "unknown flags 0xff", Codec.JSON),
        (header(FrameKind.REQUEST, 5, 0), "bad request name", Codec.MSGPACK),
        (header(FrameKind.REQUEST, 5, 1) + b"\x00", "bad request name", Codec.MSGPACK),
        (header(FrameKind.REQUEST, 5, 66) + b"\x41" + b"A" * 65, "bad request name", Codec.MSGPACK),
        (header(FrameKind.REQUEST, 5, 5, codec=Codec.JSON) + b"\x06Auth", "bad request name", Codec.JSON),
        (header(FrameKind.REQUEST, 5, 5) + b"\x04Au h", "bad request name", Codec.MSGPACK),
        (header(FrameKind.REQUEST, 5, 5) + b"\x04Au\xc3\xa4", "bad request name", Codec.MSGPACK),
    ],
)
def test_bad_kind_codec_flags_or_name_is_not_fatal(data, message, codec):
    decoder = Decoder(SERVER_KINDS)
    events = decoder.feed(data + encode_ping(6))
    assert events == [FrameError(5, 400, message, False, codec), Frame(FrameKind.PING, Codec.MSGPACK, 6, "", b"")]
    assert not decoder.closed


def test_a_request_without_room_for_a_name_is_refused_at_once():
    """Not when the next frame arrives: its first byte is not this one's name."""
    decoder = Decoder(SERVER_KINDS)
    assert decoder.feed(header(FrameKind.REQUEST, 5, 0)) == [FrameError(5, 400, "bad request name", False)]
    assert not decoder.pending


def test_ping_payload_is_passed_on():
    (frame,) = Decoder(SERVER_KINDS).feed(header(FrameKind.PING, 1, 3) + b"abc")
    assert frame == Frame(FrameKind.PING, Codec.MSGPACK, 1, "", b"abc")


# -- bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("codec", "data", "message"),
    [
        (Codec.MSGPACK, b"\xc1", "body is not valid msgpack"),
        (Codec.MSGPACK, b"\x82\xa1a", "body is not valid msgpack"),
        (Codec.MSGPACK, b"\x80\x80", "body is not valid msgpack"),
        (Codec.MSGPACK, b"\x81\xa1a\xa2\xff\xfe", "body is not valid msgpack"),
        (Codec.MSGPACK, b"\x81\x01\x02", "body: field names must be strings"),
        (Codec.MSGPACK, b"\x81\xa6sessia\x81\x01\x02", "sessia: field names must be strings"),
        (Codec.MSGPACK, b"\x81\xa1a\x91\x81\xc2\x02", "a: field names must be strings"),
        (Codec.MSGPACK, b"\x81\xc4\x01k\x01", "body: field names must be strings"),
        (Codec.MSGPACK, b"\x92\x01\x02", "body must be a map"),
        (Codec.MSGPACK, b"\xa3abc", "body must be a map"),
        (Codec.MSGPACK, b"\xc0", "body must be a map"),
        (Codec.MSGPACK, b"\x91" * 100_000 + b"\xc0", "body is not valid msgpack"),
        (Codec.MSGPACK, b"\x81\xa1a" * 100_000 + b"\xc0", "body is not valid msgpack"),
        (Codec.JSON, b"{", "body is not valid JSON"),
        (Codec.JSON, b'{"a":1}x', "body is not valid JSON"),
        (Codec.JSON, b"\xff", "body is not valid JSON"),
        (Codec.JSON, b'{"a":"\\ud800"}', "body is not valid JSON"),
        (Codec.JSON, b"[]", "body must be a map"),
        (Codec.JSON, b"null", "body must be a map"),
        (Codec.JSON, b"[" * 100_000 + b"]" * 100_000, "body is not valid JSON"),
        (Codec.JSON, b'{"a":' * 100_000, "body is not valid JSON"),
        (7, b"\x80", "unknown codec 7"),
    ],
)
def test_decode_body_errors_are_bad_requests(codec, data, message):
    with pytest.raises(BadRequest) as raised:
        decode_body(codec, data)
    assert (raised.value.code, raised.value.message) == (400, message)


@pytest.mark.parametrize("codec", [Codec.MSGPACK, Codec.JSON])
def test_empty_payload_is_an_empty_map(codec):
    assert decode_body(codec, b"") == {}


def test_moderate_nesting_is_fine():
    body = {"a": [[[[[[[[[[{"b": 1}]]]]]]]]]]}
    assert decode_body(Codec.MSGPACK, encode_body(Codec.MSGPACK, body)) == body
    assert decode_body(Codec.JSON, encode_body(Codec.JSON, body)) == body


def test_values_a_codec_cannot_carry_are_a_type_error():
    with pytest.raises(TypeError):
        encode_body(Codec.JSON, {"x": object()})
    with pytest.raises(TypeError):
        encode_body(Codec.MSGPACK, {"x": object()})


# -- Fields ----------------------------------------------------------------------------------


def fails(call, cls: type[SessiaError], message: str) -> None:
    with pytest.raises(cls) as raised:
        call()
    assert type(raised.value) is cls and raised.value.message == message


def test_field_names_are_case_insensitive():
    f = Fields({"PkDialog": "k1", "imageKey": "img", "Sessia": {"Tocken": "t", "DEVICE": {"DeviceId": "d"}}})
    assert f.str("pkDialog") == f.str("PKDIALOG") == "k1"
    assert f.str("imagekey") == "img"
    sessia = f.map("sessia")
    assert sessia.str("tocken") == "t"
    assert sessia.map("device").str("deviceid") == "d"
    assert f.has("PKDIALOG") and not f.has("nothing")


def test_null_and_empty_string_count_as_absent():
    f = Fields({"a": None, "b": "", "c": 0, "d": False})
    assert not f.has("a") and not f.has("b") and f.has("c") and f.has("d")
    assert f.str("b", required=False) is None
    assert f.int("b", required=False, default=7) == 7
    fails(lambda: f.int("a"), BadRequest, "a: field is required")
    fails(lambda: f.bool("b"), BadRequest, "b: field is required")


@pytest.mark.parametrize(
    ("raw", "value"),
    [(5, 5), ("5", 5), (" 12 ", 12), ("-3", -3), (7.0, 7), ("0", 0), ("00012", 12), (INT64_MAX, INT64_MAX)],
)
def test_lenient_integers(raw, value):
    assert Fields({"take": raw}).int("take") == value


@pytest.mark.parametrize(
    "raw", [True, False, "five", "1.5", 1.5, "--5", "-", "+5", "²", "٣", "1e3", "", [], {}, float("inf"), "0x10"]
)
def test_not_integers(raw):
    if raw == "":
        fails(lambda: Fields({"take": raw}).int("take"), BadRequest, "take: field is required")
    else:
        fails(lambda: Fields({"take": raw}).int("take"), BadRequest, "take: must be an integer")


def test_integer_ranges_are_422():
    f = Fields({"take": "500", "skip": -1, "huge": 1 << 64, "tiny": -(1 << 63) - 1})
    fails(lambda: f.int("take", maximum=100), Unprocessable, "take: must be at most 100")
    fails(lambda: f.int("skip", minimum=0), Unprocessable, "skip: must be at least 0")
    # Nothing bigger than PostgreSQL's bigint gets past the parser.
    fails(lambda: f.int("huge"), Unprocessable, f"huge: must be at most {INT64_MAX}")
    fails(lambda: f.int("tiny"), Unprocessable, f"tiny: must be at least {-(1 << 63)}")
    fails(lambda: f.int("huge", maximum=1 << 70), Unprocessable, f"huge: must be at most {INT64_MAX}")


@pytest.mark.parametrize(
    ("raw", "value"),
    [(True, True), (False, False), (1, True), (0, False), ("true", True), ("FALSE", False), (" True ", True),
     ("1", True), ("0", False)],
)
def test_lenient_booleans(raw, value):
    assert Fields({"private": raw}).bool("private") is value


@pytest.mark.parametrize("raw", [2, -1, "yes", "no", "t", 1.0, [], "2"])
def test_not_booleans(raw):
    fails(lambda: Fields({"private": raw}).bool("private"), BadRequest,
          "private: must be a boolean (true/false, 1/0)")


def test_strings():
    f = Fields({"name": "  Bob ", "num": 42, "flt": 1.5, "flag": True, "lst": ["a"], "nul": "a\x00b", "long": "x" * 11})
    assert f.str("name") == "  Bob "
    assert f.str("name", strip=True) == "Bob"
    assert f.str("num") == "42" and f.str("flt") == "1.5"
    fails(lambda: f.str("flag"), BadRequest, "flag: must be a string")
    fails(lambda: f.str("lst"), BadRequest, "lst: must be a string")
    fails(lambda: f.str("nul"), Unprocessable, "nul: must not contain NUL characters")
    fails(lambda: f.str("long", max_len=10), Unprocessable, "long: longer than 10 characters")
    fails(lambda: f.str("name", min_len=20), Unprocessable, "name: shorter than 20 characters")
    fails(lambda: Fields({"e": ""}).str("e", min_len=1), Unprocessable, "e: must not be empty")
    fails(lambda: f.str("missing"), BadRequest, "missing: field is required")


def test_nested_errors_name_the_dotted_path():
    f = Fields({"message": {"infoMessage": {"pkDialog": [1]}}, "dialog": "x"})
    inner = f.map("message").map("infomessage")
    fails(lambda: inner.str("pkDialog"), BadRequest, "message.infomessage.pkDialog: must be a string")
    fails(lambda: inner.int("order"), BadRequest, "message.infomessage.order: field is required")
    fails(lambda: f.map("dialog"), BadRequest, "dialog: must be a map")
    fails(lambda: f.map("sessia"), BadRequest, "sessia: field is required")
    fails(lambda: Fields({"m": {b"k": 1}}).map("m"), BadRequest, "m: field names must be strings")
    fails(lambda: Fields({1: 2}), BadRequest, "body: field names must be strings")
    fails(lambda: Fields({str(i): i for i in range(65)}), BadRequest, "body: too many fields")


def test_lists():
    f = Fields({"ids": [1, "2", 3], "one": 7, "word": "k", "many": list(range(101)), "bad": [1, "x"], "zero": ["0"],
                "big": [str(1 << 63)], "sup": ["²"], "neg": [-1], "flag": True})
    assert f.int_list("ids") == [1, 2, 3]
    assert f.int_list("one") == [7]
    assert f.str_list("word") == ["k"]
    fails(lambda: f.int_list("many"), Unprocessable, "many: more than 100 items")
    for name in ("bad", "zero", "sup", "neg"):
        fails(lambda name=name: f.int_list(name), BadRequest, f"{name}: must be a list of positive integers")
    fails(lambda: f.int_list("big"), Unprocessable, f"big: must be at most {INT64_MAX}")
    fails(lambda: f.list("word"), BadRequest, "word: must be a list")
    fails(lambda: f.int_list("flag"), BadRequest, "flag: must be a list")
    fails(lambda: Fields({"w": ["a", ""]}).str_list("w"), BadRequest, "w: must be a list of non-empty strings")


def test_bytes_from_bin_or_base64():
    raw = b"\x00\x01binary\xff"
    assert Fields({"bytes": raw}).bytes("bytes", max_size=100) == raw
    assert Fields({"BYTES": base64.b64encode(raw).decode()}).bytes("bytes", max_size=100) == raw
    fails(lambda: Fields({"b": "not base64!"}).bytes("b", max_size=100), BadRequest, "b: not valid base64")
    fails(lambda: Fields({"b": "ÄÄÄÄ"}).bytes("b", max_size=100), BadRequest, "b: not valid base64")
    fails(lambda: Fields({"b": 5}).bytes("b", max_size=100), BadRequest, "b: must be bytes or a base64 string")
    fails(lambda: Fields({"b": raw}).bytes("b", max_size=4), TooLarge, "b: larger than 4 bytes")
    fails(lambda: Fields({"b": "A" * 400}).bytes("b", max_size=100), TooLarge, "b: larger than 100 bytes")


@settings(max_examples=150)
@given(values(binary=True))
def test_fields_accessors_raise_only_status_errors(value):
    f = Fields({"v": value})
    for read in (
        lambda: f.str("v"), lambda: f.int("v"), lambda: f.bool("v"), lambda: f.map("v"), lambda: f.list("v"),
        lambda: f.int_list("v"), lambda: f.str_list("v"), lambda: f.bytes("v", max_size=10),
    ):
        try:
            read()
        except SessiaError as exc:
            assert exc.code in (400, 413, 422)


@settings(max_examples=300)
@given(st.text(max_size=25))
def test_integer_text_never_crashes(text):
    try:
        value = Fields({"n": text}).int("n")
    except (BadRequest, Unprocessable):
        return
    assert value == int(text.strip())
    assume(text.strip())
    assert re.fullmatch(r"-?[0-9]+", text.strip())


# -- the worked examples in docs/protocol.md -------------------------------------------------

EXAMPLE_TOKEN = "9f2c5d1be07a4c83a6f1d2e4b5c60718293a4b5c6d7e8f90a1b2c3d4e5f60718?42"
EXAMPLE_SESSIA = {
    "tocken": EXAMPLE_TOKEN,
    "device": {"deviceid": "0fcd6085918843d2"},
    "client": {"nameclient": "RollaDieApp", "hashcert": "08520331451320871a4e77a60d70dbe2", "version": 3},
}
EXAMPLE_ANSWER = {"Status": {"code": 200, "message": "Session is valid"}, "Tocken": EXAMPLE_TOKEN, "Id": 42}

#: Title in the document -> the bytes the real encoder produces.
EXAMPLES: dict[str, bytes] = {
    "auth-request-msgpack": encode_request(1, "Auth", {"sessia": EXAMPLE_SESSIA}, Codec.MSGPACK),
    "auth-response-msgpack": encode_response(1, EXAMPLE_ANSWER, Codec.MSGPACK),
    "auth-request-json": encode_request(2, "Auth", {"sessia": EXAMPLE_SESSIA}, Codec.JSON),
    "auth-response-json": encode_response(2, EXAMPLE_ANSWER, Codec.JSON),
    "ping": encode_ping(3),
    "pong": encode_pong(3),
    "error-413": encode_error(4, 413, "frame payload of 2000000 bytes exceeds the limit of 1048576 bytes"),
    "thumb-request-json": encode_request(
        5, "GetMedia", {"hash": "fa5acdf109bdee4b6f2eb886e53fc6f7", "thumb": "s", "sessia": EXAMPLE_SESSIA},
        Codec.JSON),
}


def hexdump(data: bytes) -> str:
    """The dump format the document uses: offset, 16 bytes in hex, ASCII."""
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset : offset + 16]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:04x}: {chunk.hex(' '):<47} | {text}")
    return "\n".join(lines) + "\n"


def _hex_block(doc: str, title: str) -> bytes:
    """The bytes of the hex dump that follows ``<!-- bytes: title -->``."""
    match = re.search(rf"<!-- bytes: {re.escape(title)} -->\s*```text\n(.*?)```", doc, re.S)
    assert match, f"no hex dump {title!r} in docs/protocol.md"
    out = bytearray()
    for line in match.group(1).splitlines():
        out += bytes.fromhex(line.split("|")[0].split(":", 1)[1])
    return bytes(out)


@pytest.mark.parametrize("title", list(EXAMPLES))
def test_protocol_doc_examples_are_the_encoders_bytes(title):
    data = EXAMPLES[title]
    doc = (ROOT / "docs" / "protocol.md").read_text()
    assert _hex_block(doc, title) == data
    assert struct.unpack(">I", data[10:14])[0] == len(data) - HEADER_SIZE


def test_protocol_doc_lists_every_original_request():
    from protocol.requests import ORIGINAL_REQUESTS

    doc = (ROOT / "docs" / "protocol.md").read_text()
    table = doc[doc.index("\n## Requests\n") :]
    original = table[: table.index("Beyond the original")]
    listed = re.findall(r"^\| `([A-Za-z]+)` \|", original, re.M)
    assert listed == list(ORIGINAL_REQUESTS)
    # ...and every other request the server routes is described somewhere.
    import server.handlers  # noqa: F401
    from server.dispatch import ROUTES, Dispatcher  # noqa: F401  (importing registers the routes)

    for name in ROUTES:
        assert f"`{name}`" in doc, f"{name} is not described in docs/protocol.md"


def test_protocol_doc_example_bodies_decode_as_shown():
    request, json_request = Decoder(SERVER_KINDS).feed(EXAMPLES["auth-request-msgpack"] + EXAMPLES["auth-request-json"])
    assert decode_body(request.codec, request.body) == {"sessia": EXAMPLE_SESSIA}
    assert orjson.loads(json_request.body) == {"sessia": EXAMPLE_SESSIA}
    (answer,) = Decoder(ALL_KINDS).feed(EXAMPLES["auth-response-json"])
    assert orjson.loads(answer.body) == EXAMPLE_ANSWER


@pytest.mark.parametrize("length", [0, 1, 255, 256, 65535, 65536, 1 << 20])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_prepared_response_is_the_frame_encode_response_makes(length, where):
    """A response built around a hole for its bytes, the hole filled, is
    byte for byte the frame of the same body encoded at once (each msgpack
    bin size, the bytes anywhere among the fields)."""
    data = os.urandom(length)
    fields: list[tuple[str, object]] = [("Status", {"code": 200, "message": "Media sent"}), ("Extension", "mp4"),
                                        ("Offset", 1 << 33)]
    at = {"first": 0, "middle": 2, "last": 3}[where]
    fields.insert(at, ("BytesBase64", data))
    body = dict(fields)
    prepared = PreparedResponse(body, "BytesBase64", length)
    prepared.hole[:] = data
    assert prepared.finish(0xFEEDF00D) == encode_response(0xFEEDF00D, body)


def test_a_prepared_response_needs_its_field():
    with pytest.raises(ValueError, match="'Data' is not a field"):
        PreparedResponse({"Status": {"code": 200}}, "Data", 3)
