"""The wire protocol against the real server, byte by byte.

These tests speak raw frames over a plain socket (no SDK) so they can send what
a broken or hostile client sends: bad headers, oversized frames, undecodable
bodies, half frames, many requests in one write.  Each checks what
``docs/protocol.md`` promises: which frame answers, with which Status, and
whether the connection goes on.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import time
from collections import deque
from typing import Any

import asyncpg
import msgpack
import orjson
import pytest

from client_sdk.transport import CLIENT_ACCEPTS
from protocol.codecs import Codec, decode_body
from protocol.frames import (
    HEADER,
    MAGIC,
    VERSION,
    Decoder,
    Frame,
    FrameError,
    FrameKind,
    encode_named,
    encode_ping,
    encode_request,
)
from server.config import Config

from .conftest import unique
from .support import TEST_CLIENT, ServerProcess

PASSWORD = "correct horse battery"


def header(kind: int, request_id: int, length: int, *, codec: int = Codec.MSGPACK, flags: int = 0,
           magic: bytes = MAGIC, version: int = VERSION) -> bytes:
    """A frame header with any field set to anything, valid or not."""
    return HEADER.pack(magic, version, kind, codec, flags, request_id, length)


def device(deviceid: str | None = None) -> dict[str, str]:
    return {"deviceid": deviceid or secrets.token_hex(8), "os": "Linux", "mac": "00:11", "hostname": "wire-test"}


def registration(login: str | None = None) -> dict[str, Any]:
    login = login or unique("w")
    return {
        "login": {"login": login},
        "password": {"password": PASSWORD},
        "email": {"email": f"{login}@example.org"},
        "sessia": {"device": device(), "client": TEST_CLIENT},
    }


class Wire:
    """One raw TCP connection; incoming bytes go through the real decoder."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = Decoder(CLIENT_ACCEPTS, 64 << 20)
        self.events: deque[Frame | FrameError] = deque()
        self.eof = False

    @classmethod
    async def open(cls, server: ServerProcess) -> Wire:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def _fill(self, timeout: float) -> None:
        data = await asyncio.wait_for(self.reader.read(1 << 16), timeout)
        if not data:
            self.eof = True
        else:
            self.events.extend(self.decoder.feed(data))

    async def frame(self, timeout: float = 10.0) -> Frame:
        """The next complete frame the server sends."""
        deadline = time.monotonic() + timeout
        while not self.events:
            if self.eof:
                raise AssertionError("connection closed before a frame arrived")
            await self._fill(max(0.01, deadline - time.monotonic()))
        event = self.events.popleft()
        assert isinstance(event, Frame), f"server sent bytes that are not a frame: {event}"
        return event

    async def answer(self, timeout: float = 10.0) -> tuple[Frame, dict[str, Any]]:
        frame = await self.frame(timeout)
        return frame, decode_body(frame.codec, frame.body)

    async def request(self, request_id: int, name: str, body: dict[str, Any], codec: int = Codec.MSGPACK) -> dict[str, Any]:
        """Send one request and return its answer body (asserting it is a RESPONSE)."""
        await self.send(encode_request(request_id, name, body, codec))
        frame, answer = await self.answer()
        assert (frame.kind, frame.request_id, frame.codec) == (FrameKind.RESPONSE, request_id, codec)
        return answer

    async def alive(self) -> None:
        """The connection still serves: a PING gets its PONG."""
        request_id = secrets.randbelow(1 << 31) + 1
        await self.send(encode_ping(request_id))
        frame = await self.frame()
        assert (frame.kind, frame.request_id, frame.body) == (FrameKind.PONG, request_id, b"")

    async def closed_by_server(self, timeout: float = 10.0) -> list[Frame | FrameError]:
        """Wait for the server to close; returns the frames that came before."""
        while not self.eof:
            await self._fill(timeout)
        events = list(self.events)
        self.events.clear()
        return events

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


@pytest.fixture
async def wire(server):
    """Factory of raw connections, closed after the test."""
    opened: list[Wire] = []

    async def open_wire(target: ServerProcess | None = None) -> Wire:
        w = await Wire.open(target or server)
        opened.append(w)
        return w

    yield open_wire
    for w in opened:
        await w.close()


async def expect_error(w: Wire, request_id: int, code: int, message: str, codec: int = Codec.MSGPACK) -> None:
    frame, body = await w.answer()
    assert (frame.kind, frame.request_id, frame.codec) == (FrameKind.ERROR, request_id, codec)
    assert body == {"Status": {"code": code, "message": message}}


# -- fatal header errors ----------------------------------------------------------


async def test_bad_magic_gets_error_frame_then_close(wire):
    w = await wire()
    await w.send(header(FrameKind.REQUEST, 5, 0, magic=b"GE") + b"T / HTTP/1.1\r\n\r\n")
    events = await w.closed_by_server()
    assert len(events) == 1 and isinstance(events[0], Frame)
    assert (events[0].kind, events[0].request_id) == (FrameKind.ERROR, 0)
    assert decode_body(events[0].codec, events[0].body) == {
        "Status": {"code": 400, "message": "bad magic: not a sessia frame"}
    }


async def test_unsupported_version_gets_error_frame_then_close(wire):
    w = await wire()
    await w.send(header(FrameKind.PING, 77, 0, version=2))
    events = await w.closed_by_server()
    assert len(events) == 1 and isinstance(events[0], Frame)
    assert (events[0].kind, events[0].request_id) == (FrameKind.ERROR, 77)
    assert decode_body(events[0].codec, events[0].body)["Status"] == {
        "code": 400, "message": "unsupported protocol version 2"
    }


async def test_frames_before_a_bad_header_are_still_answered(wire):
    w = await wire()
    await w.send(encode_ping(1) + encode_request(2, "Nope", {}) + b"\x00" * 14)
    events = await w.closed_by_server()
    kinds = sorted((e.kind, e.request_id) for e in events if isinstance(e, Frame))
    assert kinds == [(FrameKind.RESPONSE, 2), (FrameKind.ERROR, 0), (FrameKind.PONG, 1)]


# -- non-fatal frame errors: ERROR frame, connection goes on ---------------------------


@pytest.mark.parametrize(
    ("data", "request_id", "message"),
    [
        (header(FrameKind.RESPONSE, 11, 0), 11, "unexpected frame kind 2"),
        (header(FrameKind.PUSH, 12, 5) + b"\x04Auth", 12, "unexpected frame kind 3"),
        (header(99, 13, 3) + b"abc", 13, "unexpected frame kind 99"),
        (header(FrameKind.PONG, 20, 0), 20, "unexpected frame kind 6"),
        (header(FrameKind.REQUEST, 14, 5, codec=7) + b"\x04Auth", 14, "unknown codec 7"),
        (header(FrameKind.REQUEST, 15, 5, flags=1) + b"\x04Auth", 15, "unknown flags 0x01"),
        (header(FrameKind.REQUEST, 16, 4) + b"\x03a b", 16, "bad request name"),
        (header(FrameKind.REQUEST, 17, 1) + b"\x00", 17, "bad request name"),
        (header(FrameKind.REQUEST, 18, 3) + b"\x05ab", 18, "bad request name"),
        (header(FrameKind.REQUEST, 19, 0), 19, "bad request name"),
    ],
    ids=["response-kind", "push-kind", "unknown-kind", "pong-kind", "codec", "flags", "name-chars", "empty-name",
         "name-past-frame", "no-name"],
)
async def test_bad_frame_gets_error_frame_and_connection_survives(wire, data, request_id, message):
    w = await wire()
    await w.send(data)
    await expect_error(w, request_id, 400, message)
    await w.alive()


async def test_frame_error_on_a_json_frame_is_answered_in_json(wire):
    w = await wire()
    await w.send(header(FrameKind.REQUEST, 21, 5, codec=Codec.JSON, flags=0x80) + b"\x04Auth")
    frame, body = await w.answer()
    assert (frame.kind, frame.codec, frame.request_id) == (FrameKind.ERROR, Codec.JSON, 21)
    assert orjson.loads(frame.body) == body == {"Status": {"code": 400, "message": "unknown flags 0x80"}}


async def test_oversized_frame_gets_413_before_its_payload_and_connection_goes_on(wire, user):
    alice = await user()
    limit = Config().max_frame_size
    w = await wire()
    payload = b"\x04Auth" + b"\x00" * (limit + 1 - 5)
    # Only the header and the name: the 413 must not wait for the megabyte.
    await w.send(header(FrameKind.REQUEST, 31, len(payload)) + payload[:5])
    await expect_error(w, 31, 413, f"frame payload of {limit + 1} bytes exceeds the limit of {limit} bytes")
    # The rest of the oversized frame is skipped unread; the next frame is served.
    await w.send(payload[5:])
    answer = await w.request(32, "Auth", {"email": alice.email, "password": PASSWORD,
                                          "sessia": {"device": device(), "client": TEST_CLIENT}})
    assert answer["Status"]["code"] == 200
    assert answer["Id"] == alice.user_id


async def test_frame_over_every_limit_gets_413_right_after_the_header(wire):
    hard_max = Config().max_media_frame
    w = await wire()
    await w.send(header(FrameKind.REQUEST, 33, 0xFFFFFFFF))
    await expect_error(w, 33, 413, f"frame payload of {0xFFFFFFFF} bytes exceeds the limit of {hard_max} bytes")
    await w.close()


async def test_media_frames_may_be_larger_than_others(wire):
    w = await wire()
    big = b"\x00" * (Config().max_frame_size + 1000)
    await w.send(encode_named(FrameKind.REQUEST, 34, "Media", msgpack.packb({"bytes": big}), Codec.MSGPACK))
    frame, body = await w.answer()
    # Past the frame layer: a RESPONSE from the request's own checks, not a 413.
    assert (frame.kind, frame.request_id) == (FrameKind.RESPONSE, 34)
    assert body["Status"]["code"] == 400
    limit = Config().max_media_frame
    await w.send(header(FrameKind.REQUEST, 35, limit + 1) + b"\x05Media")
    await expect_error(w, 35, 413, f"frame payload of {limit + 1} bytes exceeds the limit of {limit} bytes")


# -- body errors: a RESPONSE with the request id, connection goes on --------------------


@pytest.mark.parametrize(
    ("codec", "body", "message"),
    [
        (Codec.MSGPACK, b"\xc1", "body is not valid msgpack"),
        (Codec.MSGPACK, b"\x81\xa1a", "body is not valid msgpack"),
        (Codec.MSGPACK, msgpack.packb({"a": 1}) + b"\x00", "body is not valid msgpack"),
        (Codec.MSGPACK, msgpack.packb([1, 2]), "body must be a map"),
        (Codec.MSGPACK, msgpack.packb({1: 2}, strict_types=False), "body: field names must be strings"),
        (Codec.MSGPACK, msgpack.packb({b"sessia": 1}, use_bin_type=True), "body: field names must be strings"),
        (Codec.MSGPACK, b"\x91" * 100_000 + b"\xc0", "body is not valid msgpack"),
        (Codec.JSON, b"{", "body is not valid JSON"),
        (Codec.JSON, b'"text"', "body must be a map"),
        (Codec.JSON, b"[" * 100_000, "body is not valid JSON"),
    ],
    ids=["reserved-byte", "truncated", "trailing", "list", "int-key", "bin-key", "deep", "json-truncated",
         "json-string", "json-deep"],
)
async def test_undecodable_body_gets_400_response_and_connection_survives(wire, codec, body, message):
    w = await wire()
    await w.send(encode_named(FrameKind.REQUEST, 41, "Auth", body, codec))
    frame, answer = await w.answer()
    assert (frame.kind, frame.request_id, frame.codec) == (FrameKind.RESPONSE, 41, codec)
    assert answer == {"Status": {"code": 400, "message": message}}
    await w.alive()


async def test_empty_body_is_an_empty_map(wire):
    w = await wire()
    await w.send(encode_named(FrameKind.REQUEST, 42, "disable", b"", Codec.MSGPACK))
    frame, answer = await w.answer()
    assert (frame.kind, frame.request_id) == (FrameKind.RESPONSE, 42)
    assert answer["Status"] == {"code": 400, "message": "sessia: field is required"}


async def test_unknown_request_name_gets_400_and_connection_survives(wire):
    w = await wire()
    answer = await w.request(51, "SendMoney", {"amount": 1})
    assert answer == {"Status": {"code": 400, "message": "unknown request 'SendMoney'"}}
    # Names are exact (field names are not): "auth" is not "Auth".
    answer = await w.request(52, "auth", {})
    assert answer["Status"] == {"code": 400, "message": "unknown request 'auth'"}
    # The body is decoded first.
    await w.send(encode_named(FrameKind.REQUEST, 53, "SendMoney", b"\xc1", Codec.MSGPACK))
    frame, answer = await w.answer()
    assert frame.request_id == 53 and answer["Status"]["message"] == "body is not valid msgpack"
    await w.alive()


async def test_request_id_zero_is_answered_as_a_response(wire):
    w = await wire()
    answer = await w.request(0, "Nope", {})
    assert answer["Status"]["message"] == "unknown request 'Nope'"


async def test_wrong_field_type_gets_400_naming_the_field(wire):
    w = await wire()
    sessia = {"device": device(), "client": TEST_CLIENT}
    answer = await w.request(61, "Auth", {"email": "a@example.org", "password": ["x"], "sessia": sessia})
    assert answer == {"Status": {"code": 400, "message": "password: must be a string"}}
    body = registration()
    body["password"] = {"password": {"nested": True}}
    answer = await w.request(62, "Registration", body)
    assert answer["Status"] == {"code": 400, "message": "password.password: must be a string"}
    body = registration()
    body["sessia"]["device"] = "not a map"
    answer = await w.request(63, "Registration", body)
    assert answer["Status"] == {"code": 400, "message": "sessia.device: must be a map"}
    await w.alive()


async def test_missing_field_and_bad_session(wire):
    w = await wire()
    body = registration()
    del body["email"]
    answer = await w.request(71, "Registration", body)
    assert answer["Status"] == {"code": 400, "message": "email: field is required"}
    answer = await w.request(72, "Auth", {})
    assert answer["Status"] == {"code": 400, "message": "sessia: field is required"}
    bad = {"sessia": {"tocken": "0" * 64 + "?1", "device": {"deviceid": "d"}, "client": TEST_CLIENT}}
    answer = await w.request(73, "Auth", bad)
    assert answer["Status"] == {"code": 401, "message": "invalid or revoked token"}
    answer = await w.request(74, "Auth", {f"f{i}": i for i in range(65)})
    assert answer["Status"] == {"code": 400, "message": "body: too many fields"}
    sessia = {"device": device(), "client": TEST_CLIENT}
    answer = await w.request(75, "Auth", {"email": "a@example.org", "password": "p" * 257, "sessia": sessia})
    assert answer["Status"] == {"code": 422, "message": "password: longer than 256 characters"}
    await w.alive()


@pytest.mark.parametrize(
    ("sessia", "code", "message"),
    [
        ({"tocken": "t", "device": {"deviceid": ""}, "client": TEST_CLIENT}, 422,
         "sessia.device.deviceid: must not be empty"),
        ({"tocken": "t", "device": {"deviceid": "d"}, "client": {"hashcert": "h"}}, 400,
         "sessia.client.nameclient: field is required"),
        ({"device": {"deviceid": "d"}, "client": TEST_CLIENT}, 400, "sessia.tocken: field is required"),
        ({"tocken": "", "device": {"deviceid": "d"}, "client": TEST_CLIENT}, 422, "sessia.tocken: must not be empty"),
        ({"tocken": "t", "device": {"deviceid": "d"}}, 401, "sessia.client is required: unverified client"),
        ({"tocken": "t", "device": {"deviceid": "d"}, "client": {**TEST_CLIENT, "version": "²"}}, 401,
         "client 'sessia-tests' is older than the minimum version 2"),
        ({"tocken": "t", "device": {"deviceid": "d"}, "client": TEST_CLIENT}, 401, "invalid or revoked token"),
    ],
    ids=["empty-device", "bad-client", "no-token", "empty-token", "no-client", "odd-version", "unknown-token"],
)
async def test_session_errors(wire, sessia, code, message):
    w = await wire()
    answer = await w.request(76, "disable", {"sessia": sessia})
    assert answer == {"Status": {"code": code, "message": message}}


async def test_json_codec_round_trip(wire, user):
    alice = await user()
    w = await wire()
    body = {"sessia": {"tocken": alice.token, "device": {"deviceid": alice.device.deviceid}, "client": TEST_CLIENT}}
    await w.send(encode_request(81, "Auth", body, Codec.JSON))
    frame, answer = await w.answer()
    assert (frame.kind, frame.codec, frame.request_id) == (FrameKind.RESPONSE, Codec.JSON, 81)
    assert orjson.loads(frame.body) == answer
    assert answer == {"Status": {"code": 200, "message": "Session is valid"}, "Tocken": alice.token, "Id": alice.user_id}


# -- pipelining ---------------------------------------------------------------------


async def test_fifty_requests_in_one_write_get_fifty_answers_matched_by_id(wire, user):
    alice = await user()
    token_body = {"sessia": {"tocken": alice.token, "device": {"deviceid": alice.device.deviceid}, "client": TEST_CLIENT}}
    ids = secrets.SystemRandom().sample(range(1, 1 << 32), 50)
    sent: dict[int, str] = {}
    data = bytearray()
    for n, request_id in enumerate(ids):
        if n % 2:
            data += encode_request(request_id, "Auth", token_body)
            sent[request_id] = "auth"
        else:
            data += encode_request(request_id, f"Nope{n}", {})
            sent[request_id] = f"Nope{n}"
    w = await wire()
    await w.send(bytes(data))
    answers: dict[int, dict[str, Any]] = {}
    while len(answers) < len(ids):
        frame, body = await w.answer()
        assert frame.kind == FrameKind.RESPONSE and frame.request_id not in answers
        answers[frame.request_id] = body
    assert set(answers) == set(ids)
    for request_id, what in sent.items():
        if what == "auth":
            assert answers[request_id] == {
                "Status": {"code": 200, "message": "Session is valid"}, "Tocken": alice.token, "Id": alice.user_id
            }
        else:
            assert answers[request_id]["Status"] == {"code": 400, "message": f"unknown request '{what}'"}


async def test_more_requests_than_the_inflight_limit_are_all_answered(wire):
    count = Config().max_inflight * 5
    w = await wire()
    await w.send(b"".join(encode_request(i, f"N{i}", {}) for i in range(1, count + 1)))
    seen = set()
    for _ in range(count):
        frame, body = await w.answer()
        assert body["Status"]["message"] == f"unknown request 'N{frame.request_id}'"
        seen.add(frame.request_id)
    assert seen == set(range(1, count + 1))
    await w.alive()


async def test_answers_may_come_out_of_order(wire):
    w = await wire()
    # Registration hashes a password (tens of milliseconds); the others are instant.
    await w.send(encode_request(1, "Registration", registration())
                 + b"".join(encode_request(i, "Nope", {}) for i in range(2, 12)))
    order = [(await w.answer())[0].request_id for _ in range(11)]
    assert sorted(order) == list(range(1, 12))
    assert order[-1] == 1, order


async def test_ping_gets_pong_with_its_id(wire):
    w = await wire()
    await w.send(encode_ping(0xFFFFFFFF) + encode_ping(0))
    first, second = await w.frame(), await w.frame()
    assert (first.kind, first.request_id, first.body) == (FrameKind.PONG, 0xFFFFFFFF, b"")
    assert (second.kind, second.request_id) == (FrameKind.PONG, 0)


async def test_frames_split_into_single_bytes_are_reassembled(wire):
    w = await wire()
    data = encode_request(91, "Nope", {"x": "y"}) + encode_ping(92)
    for i in range(len(data)):
        w.writer.write(data[i : i + 1])
        await w.writer.drain()
    frames = {f.request_id: f for f in [await w.frame(), await w.frame()]}
    assert frames[92].kind == FrameKind.PONG
    assert decode_body(frames[91].codec, frames[91].body)["Status"]["message"] == "unknown request 'Nope'"


async def test_half_closed_connection_gets_its_answers(wire):
    w = await wire()
    await w.send(encode_request(1, "Registration", registration()) + encode_request(2, "Nope", {}))
    w.writer.write_eof()
    events = await w.closed_by_server()
    answers = {e.request_id: decode_body(e.codec, e.body) for e in events if isinstance(e, Frame)}
    assert answers[1]["Status"]["code"] == 200
    assert answers[2]["Status"]["code"] == 400


# -- dedicated servers: timeouts, limits, internal errors, shutdown -----------------------


@pytest.fixture(scope="module")
def strict_server(start_server):
    """Read timeout 1 s, one request at a time per connection."""
    server = start_server("--read-timeout", "1", "--max-inflight", "1")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def idle_server(start_server):
    server = start_server("--idle-timeout", "1")
    yield server
    server.stop()


async def wait_for_log(server: ServerProcess, text: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in server.log:
            if text in line:
                return line
        await asyncio.sleep(0.02)
    raise AssertionError(f"no log line with {text!r}")


async def test_half_a_header_is_closed_after_the_read_timeout(wire, strict_server):
    w = await wire(strict_server)
    await w.send(encode_ping(1))
    assert (await w.frame()).kind == FrameKind.PONG
    started = time.monotonic()
    await w.send(encode_ping(2)[:7])
    assert await w.closed_by_server(timeout=5) == []
    assert 0.9 < time.monotonic() - started < 3
    await wait_for_log(strict_server, "frame not completed within 1s")


async def test_a_connection_that_sends_nothing_is_closed_after_the_read_timeout(wire, strict_server):
    started = time.monotonic()
    w = await wire(strict_server)
    assert await w.closed_by_server(timeout=5) == []
    assert 0.9 < time.monotonic() - started < 3


async def test_a_busy_stream_of_frames_is_not_a_slow_frame(wire, strict_server):
    """The read timeout is for one frame: a client whose every write ends in the
    middle of a frame, while frames keep completing, is not dribbling."""
    w = await wire(strict_server)
    ping = encode_ping(7)
    await w.send(ping[:7])
    writes = 0
    started = time.monotonic()
    while time.monotonic() - started < 2.5:
        await asyncio.sleep(0.05)
        await w.send(ping[7:] + ping[:7])
        writes += 1
    await w.send(ping[7:])
    for _ in range(writes + 1):
        assert (await w.frame()).kind == FrameKind.PONG
    await w.alive()


async def test_the_inflight_limit_makes_a_connection_wait(wire, strict_server):
    """With --max-inflight 1 a slow request holds back the instant ones behind it."""
    w = await wire(strict_server)
    await w.send(encode_request(1, "Registration", registration())
                 + b"".join(encode_request(i, "Nope", {}) for i in range(2, 8)))
    order = [(await w.answer())[0].request_id for _ in range(7)]
    assert order == list(range(1, 8))


async def test_an_idle_connection_is_closed_after_the_idle_timeout(wire, idle_server):
    w = await wire(idle_server)
    # Keep-alive: PINGs every 0.3 s hold the connection open past the timeout...
    for _ in range(6):
        await w.alive()
        await asyncio.sleep(0.3)
    # ...and silence closes it.
    started = time.monotonic()  # about 0.3 s after the last frame the server saw
    assert await w.closed_by_server(timeout=5) == []
    assert 0.6 < time.monotonic() - started < 3  # the 1 s timeout, less the 0.3 s already idle
    await wait_for_log(idle_server, "idle for 1s")


async def test_internal_error_is_a_generic_500_and_the_traceback_stays_in_the_log(wire, start_server, new_database):
    url = new_database()
    server = start_server(database_url=url)
    try:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("ALTER TABLE users RENAME TO users_elsewhere")
        finally:
            await conn.close()
        w = await wire(server)
        answer = await w.request(1, "Registration", registration())
        assert answer == {"Status": {"code": 500, "message": "internal error"}}
        await w.alive()
        await w.close()
        await wait_for_log(server, "unhandled error in Registration")
        assert any("Traceback" in line for line in server.log)
        assert any('relation "users" does not exist' in line for line in server.log)
    finally:
        server.stop()


async def test_graceful_shutdown_answers_inflight_requests_then_closes(wire, start_server):
    # A slow password hash keeps the Registration in flight for most of a second.
    server = start_server("--argon2-time-cost", "40")
    try:
        w = await wire(server)
        await w.alive()
        await w.send(encode_request(1, "Registration", registration()))
        await asyncio.sleep(0.15)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        await wait_for_log(server, "shutting down")
        # A request sent once shutdown has begun is not read, so not run.
        await w.send(encode_request(2, "Nope", {}))
        with pytest.raises(OSError):
            await asyncio.open_connection(server.host, server.port)
        events = await w.closed_by_server(timeout=10)
        await w.close()
        assert [(e.kind, e.request_id) for e in events if isinstance(e, Frame)] == [(FrameKind.RESPONSE, 1)]
        assert decode_body(events[0].codec, events[0].body)["Status"]["code"] == 200
        assert server.proc.wait(10) == 0
    finally:
        server.stop()
