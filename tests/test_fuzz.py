"""Hostile input: random bodies for every request, over a real connection.

Whatever a client sends in a well-formed frame, the answer is a RESPONSE with
a deliberate Status (never 500), and the server keeps serving.  Bodies are
random JSON/msgpack values (deep nesting, wrong types, NUL, lone surrogates,
NaN, huge integers, non-string keys), both alone and as the values of each
request's real fields beside a valid session, so the fuzzing reaches past the
session check into the handlers.

The default run is bounded (``SESSIA_FUZZ_EXAMPLES``, 60 per test); ``make fuzz``
repeats the searches for ``FUZZ_SECONDS`` in total.
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
from protocol.requests import ORIGINAL_REQUESTS

from .conftest import unique
from .support import TEST_CLIENT, ServerProcess

ALLOWED = {200, 400, 401, 403, 404, 409, 410, 413, 422, 429}
EXAMPLES = int(os.environ.get("SESSIA_FUZZ_EXAMPLES", "60"))
FUZZ_SECONDS = float(os.environ.get("SESSIA_FUZZ_SECONDS", "0"))
EXTRA_REQUESTS = ("Subscribe", "Unsubscribe", "GetEvents")
NAMES = (*ORIGINAL_REQUESTS, *EXTRA_REQUESTS)
PASSWORD = "correct horse battery"
_ids = itertools.count(1)

#: The fields each request reads (dotted paths), from docs/api/*.md.
FIELDS: dict[str, tuple[str, ...]] = {
    "Registration": ("login.login", "password.password", "email.email"),
    "Auth": ("email", "password"),
    "disable": (),
    "Email": ("email", "code"),
    "Media": ("extension", "bytes"),
    "GetMedia": ("hash", "PkDialog", "take", "skip"),
    "ChangeUser": ("nickname", "oldPass", "newPass", "imagekey", "email"),
    "GetUser": ("id",),
    "RequestFrBl": ("operation", "id", "description", "take", "skip"),
    "CreateDialog": ("dialog.name", "dialog.private", "dialog.idUsers", "dialog.photo"),
    "ChangeDialog": ("dialog.pkDialog", "dialog.name", "dialog.private", "dialog.photo", "dialog.IdUsers",
                     "dialog.admins"),
    "KickUser": ("PkDialog", "user"),
    "GetDialogs": ("date", "take", "skip"),
    "GetUsersDialog": ("pkDialog",),
    "SendMessage": ("operation", "message.infoMessage.msgkey", "message.infoMessage.content",
                    "message.infoMessage.pkDialog", "message.infoMessage.forwardedKey",
                    "message.infoMessage.important", "message.hash", "message.order"),
    "GetMessages": ("pkDialog", "date", "take", "skip", "msgkey"),
    "GetDelMessages": ("pkDialog", "date", "take", "skip"),
    "Search": ("operation", "search", "takedialogs", "skipdialogs", "dialogs", "take", "skip"),
    "Subscribe": ("after",),
    "Unsubscribe": (),
    "GetEvents": ("after", "take"),
}


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
    """A real user with a dialog, a message and an upload: keys the fuzzer may use."""

    def __init__(self, server: ServerProcess) -> None:
        self.wire = SyncWire(server)
        self.server = server
        self.user_id, self.sessia = self.register()
        self.email = self.last_email
        self.other_id, _ = self.register()
        dialog = self.call("CreateDialog", {"dialog": {"name": "fuzz", "idUsers": [self.other_id]}})
        self.dialog = dialog["hash"]
        sent = self.call("SendMessage", {"operation": "add",
                                         "message": {"infoMessage": {"pkDialog": self.dialog, "content": "hi"}}})
        self.msgkey = sent["msgkey"]
        self.media = self.call("Media", {"extension": "txt", "bytes": b"fuzz"})["Key"]

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

    def log_in_again(self) -> None:
        """A new session (``disable`` fuzzing logs the current one out)."""
        sessia = login_sessia()
        answer = self.wire.request("Auth", {"email": self.email, "password": PASSWORD, "sessia": sessia})
        assert answer["Status"]["code"] == 200, answer
        self.sessia = self.token_sessia(answer, sessia)

    def call(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self.wire.request(name, {**body, "sessia": self.sessia})
        assert answer["Status"]["code"] == 200, answer
        return answer

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
def world(server: ServerProcess):
    w = World(server)
    yield w
    w.wire.close()


# -- value strategies ------------------------------------------------------------------------

# Any code point, lone surrogates included (they cannot be UTF-8: the codecs must refuse them).
any_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=40)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | any_text
    | st.binary(max_size=40)
    | st.sampled_from(["\x00", "a\x00b", "\ud800", "\udfff\ud800", "\u202e", "\ufeff", "' OR 1=1 --", "%s%n",
                       "9" * 40, "-0", " 5 ", "1e3", "NaN"])
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(any_text, children, max_size=6),
    max_leaves=25,
)
bodies = st.dictionaries(any_text, values, max_size=8)
codecs = st.sampled_from([Codec.MSGPACK, Codec.JSON])


def raw_body(codec: int, body: Any) -> bytes:
    """Encode without the server's own encoder, so values it would never send
    (lone surrogates, NaN, bytes in JSON, odd keys) reach it as they are."""
    if codec == Codec.MSGPACK:
        return msgpack.Packer(use_bin_type=True, unicode_errors="surrogatepass").pack(body)
    return json.dumps(body, ensure_ascii=True, allow_nan=True, default=lambda b: b.hex()).encode()


def check_answer(wire: SyncWire, name: str, codec: int, body: Any) -> int:
    request_id = next(_ids)
    try:
        payload = raw_body(codec, body)
    except (TypeError, ValueError, OverflowError):
        payload = b"\xc1"  # not encodable: send an undecodable body instead
    frame, answer = wire.roundtrip(encode_named(FrameKind.REQUEST, request_id, name, payload, codec), request_id)
    code = answer["Status"]["code"]
    assert frame.kind == FrameKind.RESPONSE, (frame, answer)
    assert code in ALLOWED, (name, body, answer)
    assert "Traceback" not in answer["Status"]["message"]
    return code


def with_fields(base: dict[str, Any], paths: tuple[str, ...], chosen: dict[str, Any]) -> dict[str, Any]:
    """``base`` plus each chosen dotted path set to its value."""
    body = dict(base)
    for path, value in chosen.items():
        if path not in paths:
            continue
        node = body
        parts = path.split(".")
        for part in parts[:-1]:
            nxt = node.get(part)
            if not isinstance(nxt, dict):
                nxt = node[part] = {}
            node = nxt
        node[parts[-1]] = value
    return body


def run(test: Callable[[], None], share: int) -> None:
    """Once (bounded), or again and again for this test's share of FUZZ_SECONDS."""
    deadline = time.monotonic() + FUZZ_SECONDS / share
    test()
    while time.monotonic() < deadline:
        test()


fuzz_settings = settings(max_examples=EXAMPLES, deadline=None, database=None,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                HealthCheck.function_scoped_fixture])


# -- the tests ---------------------------------------------------------------------------------


def test_random_bodies_without_a_session(server):
    wire = SyncWire(server)

    @fuzz_settings
    @given(name=st.sampled_from(NAMES), codec=codecs, body=values)
    def fuzz(name: str, codec: int, body: Any) -> None:
        check_answer(wire, name, codec, body)

    try:
        run(fuzz, 4)
        wire.alive()
    finally:
        wire.close()


@pytest.mark.parametrize("name", NAMES)
def test_random_field_values_with_a_valid_session(world: World, name: str):
    paths = FIELDS[name] or ("x",)
    field_values = st.one_of(st.sampled_from(world.plausible()), values)
    codes: list[int] = []

    @fuzz_settings
    @given(codec=codecs, chosen=st.dictionaries(st.sampled_from(paths), field_values, max_size=len(paths)),
           extra=bodies)
    def fuzz(codec: int, chosen: dict[str, Any], extra: dict[str, Any]) -> None:
        sessia = login_sessia() if name in ("Registration", "Auth") else world.sessia
        body = with_fields({**extra, "sessia": sessia}, paths, chosen)
        if name == "Auth" and "password" not in body:
            body["password"] = "wrong password"  # by password; by token is the session check itself
        codes.append(check_answer(world.wire, name, codec, body))

    run(fuzz, 2 * len(NAMES))
    world.wire.alive()
    if name == "disable":
        assert 200 in codes  # a well-formed disable logged the session out...
        world.log_in_again()
    else:
        # ...and nothing else the fuzzer sent did
        assert world.wire.request("Auth", {"sessia": world.sessia})["Status"]["code"] == 200


def test_deep_nesting_and_huge_values(server):
    wire = SyncWire(server)
    big = 1 << 20  # --max-frame-size
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
                if frame.kind == FrameKind.ERROR:
                    assert code == 413 and len(payload) > big, answer  # refused before reading
                else:
                    assert code in ALLOWED, (name, answer)
        wire.alive()
    finally:
        wire.close()


def test_the_server_still_serves_a_new_client_after_the_fuzzing(server):
    wire = SyncWire(server)
    try:
        login = unique("fz")
        answer = wire.request("Registration", {"login": {"login": login}, "password": {"password": PASSWORD},
                                               "email": {"email": f"{login}@example.org"}, "sessia": login_sessia()})
        assert answer["Status"]["code"] == 200
    finally:
        wire.close()
