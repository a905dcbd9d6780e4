"""Hostile input: random and schema-built bodies for every request, over a real connection.

Whatever a client sends in a well-formed frame, the answer is a RESPONSE with
a status the request's documentation lists (never 500), the server's log
shows no traceback, and the server keeps serving.  Three searches:

- random JSON/msgpack values (deep nesting, wrong types, NUL, lone
  surrogates, NaN, huge integers, non-string keys) as whole bodies;
- the same values at each request's real fields beside a valid session;
- bodies built from each request's schema (``tests/fuzz_schema.py``): every
  field it reads, mostly well-formed, with boundary values of its kind
  (dates at the ends of the calendar with offsets, integers at 2^31, 2^63
  and 2^64, blank and non-BMP strings, lists over their limits), so the
  hostile value reaches the handler and the SQL behind it.

The searches run against a server of their own with the rate limits off (a
429 would stop them at the door).  ``make test`` runs a short profile;
``make fuzz`` runs ``FUZZ_EXAMPLES`` (100 000) examples in total, shared out
between the searches, and the run's summary says how many ran.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client_sdk.transport import CLIENT_ACCEPTS
from protocol.codecs import Codec, decode_body
from protocol.frames import Decoder, Frame, FrameKind, encode_named, encode_ping, encode_request
from server import handlers  # noqa: F401  (registers every route)
from server.dispatch import ROUTES

from .conftest import unique
from .fuzz_schema import DOCUMENTED, LOGIN_REQUESTS, SCHEMA, TALLY, Plausible, any_text, schema_bodies, set_path, values
from .support import TEST_CLIENT, ServerProcess

#: ``make fuzz``: the examples of the whole file, shared out by weight.  0: the short profile.
TOTAL = int(os.environ.get("SESSIA_FUZZ_EXAMPLES", "0"))
SHORT = 40  # examples per search in the short profile
NAMES = tuple(SCHEMA)
PASSWORD = "correct horse battery"
MAX_FRAME = 1 << 20  # --max-frame-size
#: Every rate limit off: the searches must reach the handlers, not the 429 at their door.
NO_RATE_LIMITS = [arg for name in ("auth-account", "auth-ip", "registration-account", "registration-ip",
                                   "email-account", "email-ip", "send-message", "media", "search", "reset-account",
                                   "reset-ip")
                  for arg in (f"--rate-{name}", "0")]
_ids = itertools.count(1)


# -- a blocking client: hypothesis drives plain functions -------------------------------------


class SyncWire:
    def __init__(self, server: ServerProcess) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=15)
        self.decoder = Decoder(CLIENT_ACCEPTS, 64 << 20)
        self.events: deque[Any] = deque()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def frame(self) -> Frame:
        """The next frame (pushes skipped); a silent server fails by timeout."""
        while True:
            while self.events:
                event = self.events.popleft()
                assert isinstance(event, Frame), f"not a frame: {event}"
                if event.kind != FrameKind.PUSH:
                    return event
            data = self.sock.recv(1 << 16)
            assert data, "the server closed the connection"
            self.events.extend(self.decoder.feed(data))

    def roundtrip(self, frame: bytes, request_id: int) -> tuple[Frame, dict[str, Any]]:
        self.send(frame)
        answer = self.frame()
        assert answer.request_id == request_id
        return answer, decode_body(answer.codec, answer.body)

    def request(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        request_id = next(_ids)
        frame, answer = self.roundtrip(encode_request(request_id, name, body), request_id)
        assert frame.kind == FrameKind.RESPONSE
        return answer

    def alive(self) -> None:
        request_id = next(_ids)
        self.send(encode_ping(request_id))
        assert self.frame().kind == FrameKind.PONG

    def close(self) -> None:
        self.sock.close()


def login_sessia() -> dict[str, Any]:
    device = {"deviceid": secrets.token_hex(8), "os": "Linux", "mac": "00:11", "hostname": "fuzz"}
    return {"device": device, "client": TEST_CLIENT}


class World:
    """Real users, dialogs, messages and an upload: keys the fuzzer may use.

    The caller owns one dialog and is a plain member of another (so "only the
    owner" and "only the author" are reachable), with a message of each
    user and a deleted one in it (so is "gone")."""

    def __init__(self, server: ServerProcess) -> None:
        self.wire = SyncWire(server)
        self.server = server
        self.user_id, self.sessia = self.register()
        self.email = self.last_email
        self.other_id, self.other_sessia = self.register()
        self.media = self.call("Media", {"extension": "txt", "bytes": b"fuzz"})["Key"]
        self.dialogs: list[str] = []
        self.msgkeys: list[str] = []
        self.refresh()

    def refresh(self) -> None:
        """New dialogs and messages: a search that left a dialog or deleted
        a message must not leave the next one only "not found" to reach;
        nor a block ("addBlock") only "blocked"."""
        for sessia, other in ((self.sessia, self.other_id), (self.other_sessia, self.user_id)):
            self.wire.request("RequestFrBl", {"operation": "delBlock", "id": other, "sessia": sessia})
        mine = self.call("CreateDialog", {"dialog": {"name": "fuzz", "idUsers": [self.other_id]}})["hash"]
        theirs = self.call("CreateDialog", {"dialog": {"name": "theirs", "idUsers": [self.user_id]}},
                           self.other_sessia)["hash"]
        self.dialog = mine
        self.msgkey = self.send(mine, self.sessia)
        keys = [self.msgkey, self.send(mine, self.other_sessia), self.send(theirs, self.other_sessia)]
        gone = self.send(mine, self.sessia)
        self.call("SendMessage", {"operation": "delete", "message": {"infoMessage": {"pkDialog": mine,
                                                                                    "msgkey": gone}}})
        self.dialogs = [mine, theirs]
        self.msgkeys = [*keys, gone]

    def send(self, dialog: str, sessia: dict[str, Any]) -> str:
        body = {"operation": "add", "message": {"infoMessage": {"pkDialog": dialog, "content": "hi"}}}
        return self.call("SendMessage", body, sessia)["msgkey"]

    def register(self) -> tuple[int, dict[str, Any]]:
        login = unique("fz")
        sessia = login_sessia()
        answer = self.wire.request("Registration", {"login": {"login": login}, "password": {"password": PASSWORD},
                                                    "email": {"email": f"{login}@example.org"}, "sessia": sessia})
        assert answer["Status"]["code"] == 200, answer
        self.last_email = f"{login}@example.org"
        return answer["Id"], self.token_sessia(answer, sessia)

    @staticmethod
    def token_sessia(answer: dict[str, Any], sessia: dict[str, Any]) -> dict[str, Any]:
        return {"tocken": answer["Tocken"], "device": {"deviceid": sessia["device"]["deviceid"]},
                "client": TEST_CLIENT}

    def logged_in(self) -> bool:
        return self.wire.request("Auth", {"sessia": self.sessia})["Status"]["code"] == 200

    def log_in_again(self) -> None:
        """A new session (``disable`` and ``RevokeSession`` fuzzing log the current one out)."""
        sessia = login_sessia()
        answer = self.wire.request("Auth", {"email": self.email, "password": PASSWORD, "sessia": sessia})
        assert answer["Status"]["code"] == 200, answer
        self.sessia = self.token_sessia(answer, sessia)

    def call(self, name: str, body: dict[str, Any], sessia: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = self.wire.request(name, {**body, "sessia": sessia or self.sessia})
        assert answer["Status"]["code"] == 200, answer
        return answer

    def known(self) -> Plausible:
        return Plausible(users=(self.user_id, self.other_id), dialogs=tuple(self.dialogs),
                         msgkeys=tuple(self.msgkeys), media=(self.media,), emails=(self.email,), passwords=(PASSWORD,))

    def plausible(self) -> list[Any]:
        """Values that pass parsing often enough to reach the handlers."""
        return [
            self.user_id, self.other_id, str(self.other_id), self.dialog, self.msgkey, self.media,
            "-1", "2020-01-01T00:00:00Z", 0, 1, 50, 100, 101, -1, 2**63 - 1, "", None, True, "false", [],
            [self.other_id], [self.media], [1], "add", "edit", "delete", "deleteOnlyMe", "everyWhere", "inDialogs",
            "append", "accept", "cancel", "remove", "update", "getFriend", "getIncoming", "getOutcoming",
            "addBlock", "delBlock", "listBlocks", "png", "txt", "../../etc/passwd", "123456", PASSWORD,
            "x@example.org", "iVBORw0KGgo=", "hello", ["a\x00b"], [self.dialog, "\x00"],
        ]


@pytest.fixture(scope="module")
def fuzz_server(start_server) -> ServerProcess:
    return start_server(*NO_RATE_LIMITS)


@pytest.fixture(scope="module")
def world(fuzz_server: ServerProcess):
    w = World(fuzz_server)
    yield w
    w.wire.close()


# -- sending and judging -----------------------------------------------------------------------

codecs = st.sampled_from([Codec.MSGPACK, Codec.JSON])
bodies = st.dictionaries(any_text, values, max_size=8)


def raw_body(codec: int, body: Any) -> bytes:
    """Encode without the server's own encoder, so values it would never send
    (lone surrogates, NaN, bytes in JSON, odd keys) reach it as they are."""
    if codec == Codec.MSGPACK:
        return msgpack.Packer(use_bin_type=True, unicode_errors="surrogatepass").pack(body)
    return json.dumps(body, ensure_ascii=True, allow_nan=True, default=lambda b: b.hex()).encode()


def check_answer(wire: SyncWire, name: str, codec: int, body: Any, server: ServerProcess) -> int:
    """Send one body; its answer must be a RESPONSE with a status documented
    for ``name``, and the server's log must stay clean."""
    request_id = next(_ids)
    try:
        payload = raw_body(codec, body)
    except (TypeError, ValueError, OverflowError):
        payload = b"\xc1"  # not encodable: send an undecodable body instead
    mark = len(server.log)
    frame, answer = wire.roundtrip(encode_named(FrameKind.REQUEST, request_id, name, payload, codec), request_id)
    code = answer["Status"]["code"]
    TALLY[code] += 1
    if code == 500:
        time.sleep(0.2)  # the traceback is on its way through the log pipe: show it
    if frame.kind == FrameKind.ERROR:  # a frame over --max-frame-size is refused unread (docs/protocol.md)
        assert code == 413 and len(payload) > MAX_FRAME, (frame, answer)
    else:
        assert frame.kind == FrameKind.RESPONSE, (frame, answer)
        assert code in DOCUMENTED.get(name, {400}), (name, codec, body, answer, server.alarms(mark))
    assert "Traceback" not in answer["Status"]["message"]
    assert not server.alarms(mark), (name, codec, body, answer, server.alarms(mark))
    return code


def assert_clean_log(wire: SyncWire, server: ServerProcess, since: int) -> None:
    """After a search: the server still answers, and logged nothing alarming
    (also what reached the log after the example that caused it)."""
    wire.alive()
    time.sleep(0.1)
    assert not server.alarms(since), "\n".join(server.log[since:][-60:])


def with_fields(base: dict[str, Any], paths: tuple[str, ...], chosen: dict[str, Any]) -> dict[str, Any]:
    """``base`` plus each chosen dotted path set to its value (``base`` unchanged)."""
    body = dict(base)
    for path, value in chosen.items():
        if path in paths:
            set_path(body, path, value)
    return body


#: Shares of TOTAL: the whole-body search, each request's field search, and
#: each request's schema search (three shares: it reaches deepest).
_SHARES = 1 + len(NAMES) + 3 * len(NAMES)


def quota(shares: int) -> int:
    """This search's part of TOTAL, rounded up: the parts add up to TOTAL at least."""
    return -(-TOTAL * shares // _SHARES) if TOTAL else 0


def fuzz_settings(examples: int) -> settings:
    return settings(max_examples=max(1, examples), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])


def run(search: Callable[[], None], shares: int) -> None:
    """Once (the short profile), or again and again until this search's share of TOTAL has run."""
    want = quota(shares)
    start = TALLY.total()
    search()
    while TALLY.total() - start < want:
        search()


def examples(shares: int, short: int = SHORT) -> int:
    """Examples per hypothesis run: ``short``, or under ``make fuzz`` runs of
    up to 2000 (hypothesis varies more within one run than across many)."""
    return min(quota(shares), 2000) if TOTAL else short


# -- the tests ---------------------------------------------------------------------------------


def test_every_request_has_a_schema_and_documented_statuses():
    """A request added without a schema would escape the fuzzing."""
    assert set(SCHEMA) == set(ROUTES)
    assert set(DOCUMENTED) == set(ROUTES)


def test_random_bodies_without_a_session(fuzz_server):
    wire = SyncWire(fuzz_server)
    mark = len(fuzz_server.log)

    @fuzz_settings(examples(1, short=100))
    @given(name=st.sampled_from(NAMES), codec=codecs, body=values)
    def fuzz(name: str, codec: int, body: Any) -> None:
        check_answer(wire, name, codec, body, fuzz_server)

    try:
        run(fuzz, 1)
        assert_clean_log(wire, fuzz_server, mark)
    finally:
        wire.close()


def keep_logged_in(world: World, name: str, code: int) -> None:
    """``disable`` and ``RevokeSession`` may log the world's session out: that
    is their job, so log in again for the next example."""
    if name in ("disable", "RevokeSession") and code == 200 and not world.logged_in():
        world.log_in_again()


def base_for(world: World, name: str) -> dict[str, Any]:
    return {"sessia": login_sessia() if name in LOGIN_REQUESTS else world.sessia}


@pytest.mark.parametrize("name", NAMES)
def test_random_field_values_with_a_valid_session(world: World, fuzz_server: ServerProcess, name: str):
    paths = tuple(SCHEMA[name]) or ("x",)
    field_values = st.one_of(st.sampled_from(world.plausible()), values)
    mark = len(fuzz_server.log)

    @fuzz_settings(examples(1))
    @given(codec=codecs, chosen=st.dictionaries(st.sampled_from(paths), field_values, max_size=len(paths)),
           extra=bodies)
    def fuzz(codec: int, chosen: dict[str, Any], extra: dict[str, Any]) -> None:
        body = with_fields({**extra, **base_for(world, name)}, paths, chosen)
        if name == "Auth" and "password" not in body:
            body["password"] = "wrong password"  # by password; by token is the session check itself
        keep_logged_in(world, name, check_answer(world.wire, name, codec, body, fuzz_server))

    world.refresh()
    run(fuzz, 1)
    assert_clean_log(world.wire, fuzz_server, mark)
    if name not in ("disable", "RevokeSession"):
        # nothing else the fuzzer sent logged the session out
        assert world.logged_in()
    elif not world.logged_in():
        world.log_in_again()


@pytest.mark.parametrize("name", NAMES)
def test_schema_bodies_get_documented_statuses(world: World, fuzz_server: ServerProcess, name: str):
    """Bodies built from the request's schema: boundary values of each
    field's kind beside valid ones, in both codecs."""
    world.refresh()
    known = world.known()
    mark = len(fuzz_server.log)
    codes: list[int] = []

    @fuzz_settings(examples(3, short=50))
    @given(codec=codecs, body=schema_bodies(name, known, base_for(world, name)))
    def fuzz(codec: int, body: dict[str, Any]) -> None:
        if name not in LOGIN_REQUESTS:
            body = {**body, "sessia": world.sessia}  # the current one: disable may have replaced it
        code = check_answer(world.wire, name, codec, body, fuzz_server)
        codes.append(code)
        keep_logged_in(world, name, code)

    run(fuzz, 3)
    assert_clean_log(world.wire, fuzz_server, mark)
    if TOTAL:  # thousands of examples: some must have got past the parser, or the schema is wrong
        assert set(codes) - {400, 401, 422}, f"{name}: no body got past validation: {sorted(set(codes))}"


def test_deep_nesting_and_huge_values(fuzz_server):
    wire = SyncWire(fuzz_server)
    mark = len(fuzz_server.log)
    big = MAX_FRAME
    cases: list[Any] = [
        {"email": "a" * (big - 200), "password": "x"},
        {"email": "a" * (big + 10), "password": "x"},  # over the limit: ERROR 413
        {"ids": list(range(100_000))},
        {"login": {"login": "\x00" * 1000}},
        {str(i): i for i in range(10_000)},
        {"message": {"infoMessage": {"content": "\ud800" * 50_000}}},
    ]
    payloads = [(codec, raw_body(codec, case)) for case in cases for codec in (Codec.MSGPACK, Codec.JSON)]
    for depth in (100, 10_000, 200_000):  # written by hand: the encoders refuse to nest this deep
        payloads.append((Codec.MSGPACK, b"\x81\xa1a" + b"\x91" * depth + b"\x01"))
        payloads.append((Codec.MSGPACK, b"\x81\xa1a" * depth + b"\x01"))
        payloads.append((Codec.JSON, b'{"a":' + b"[" * depth + b"1" + b"]" * depth + b"}"))
        payloads.append((Codec.JSON, b'{"a":' * depth + b"1" + b"}" * depth))
    try:
        for name in ("Registration", "Auth", "SendMessage", "Search", "Nope"):
            for codec, payload in payloads:
                request_id = next(_ids)
                frame, answer = wire.roundtrip(
                    encode_named(FrameKind.REQUEST, request_id, name, payload, codec), request_id
                )
                code = answer["Status"]["code"]
                TALLY[code] += 1
                if frame.kind == FrameKind.ERROR:
                    assert code == 413 and len(payload) > big, answer  # refused before reading
                else:
                    assert code in DOCUMENTED.get(name, {400}), (name, answer)
        assert_clean_log(wire, fuzz_server, mark)
    finally:
        wire.close()


def test_the_server_still_serves_a_new_client_after_the_fuzzing(fuzz_server):
    wire = SyncWire(fuzz_server)
    try:
        login = unique("fz")
        answer = wire.request("Registration", {"login": {"login": login}, "password": {"password": PASSWORD},
                                               "email": {"email": f"{login}@example.org"}, "sessia": login_sessia()})
        assert answer["Status"]["code"] == 200
        assert not fuzz_server.alarms(0), "\n".join(fuzz_server.log[-60:])
    finally:
        wire.close()
