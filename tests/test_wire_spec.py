"""The places where docs/protocol.md had left a second-language client's author
guessing, each settled in the spec and checked here against the real server:
the missing-session rule, ``Subscribe``'s ``LastSeq``, a request without
``client`` under ``--allow-any-client``, the codec byte of PING and PONG, the
password length errors and the statuses of the sync and presence requests."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

from protocol.codecs import Codec, decode_body
from protocol.frames import HEADER, HEADER_SIZE, MAGIC, VERSION, FrameKind
from server.routes import ROUTES

from .support import TEST_CLIENT

#: The requests that need no session: they log in or reset a password.
NO_SESSION = {"Registration", "Auth", "ResetPassword"}


def needs_session() -> list[str]:
    import server.dispatch  # noqa: F401  (fills ROUTES with every handler)

    return sorted(name for name, r in ROUTES.items() if r.session)


async def raw_frames(server, data: bytes, count: int) -> list[tuple[int, int, int, bytes]]:
    """Send ``data`` on a new connection; the first ``count`` frames back as
    (kind, codec, request id, payload)."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(data)
        await writer.drain()
        out = []
        for _ in range(count):
            head = await asyncio.wait_for(reader.readexactly(HEADER_SIZE), 10)
            _, _, kind, codec, _, rid, length = HEADER.unpack(head)
            out.append((kind, codec, rid, await reader.readexactly(length)))
        return out
    finally:
        writer.close()


def test_every_request_but_the_logins_needs_a_session() -> None:
    with_session = set(needs_session())
    assert set(ROUTES) - with_session == NO_SESSION


async def test_a_missing_session_is_400_for_every_request_that_needs_one(connect) -> None:
    """One rule (docs/protocol.md, "Session errors"): missing is 400, never 401."""
    c = await connect()
    names = needs_session()
    assert len(names) >= 20
    for name in names:
        answer = await c.call(name, {})
        assert answer["Status"] == {"code": 400, "message": "sessia: field is required"}, name


async def test_subscribe_last_seq_without_after_is_the_newest_seq(user) -> None:
    alice, bob = await user(), await user()
    fresh = await user()
    assert (await fresh.request("Subscribe", {}))["LastSeq"] == 0  # a log with no events yet
    await alice.create_dialog("spec", members=[bob.user_id])
    await alice.create_dialog("spec 2", members=[bob.user_id])
    newest = (await bob.request("GetEvents", {"after": 0}))["LastSeq"]
    assert newest >= 2
    answer = await bob.request("Subscribe", {})
    assert answer["LastSeq"] == newest
    # With `after`, it is echoed (even beyond the newest).
    assert (await bob.request("Subscribe", {"after": newest}))["LastSeq"] == newest  # nothing to catch up
    assert (await bob.request("Subscribe", {"after": newest + 50}))["LastSeq"] == newest + 50
    # Without `after` again: the next event pushed is the one after LastSeq.
    assert (await bob.request("Subscribe", {}))["LastSeq"] == newest
    await alice.create_dialog("spec 3", members=[bob.user_id])
    push = await asyncio.wait_for(bob.next_push(), 10)
    assert push.name == "Event" and push.body["Seq"] == newest + 1


async def test_without_client_allow_any_client_accepts_and_records_no_build(start_server, connect) -> None:
    dev = start_server("--allow-any-client")
    c = await connect(target=dev, client=TEST_CLIENT)
    login = f"a{secrets.token_hex(5)}"
    device = {"deviceid": secrets.token_hex(8)}
    answer = await c.call("Registration", {
        "login": {"login": login}, "password": {"password": "correct horse battery"},
        "email": {"email": f"{login}@example.org"}, "sessia": {"device": device},
    })
    assert answer["Status"]["code"] == 200, answer
    sessia = {"tocken": answer["Tocken"], "device": device}
    sessions = await c.call("GetSessions", {"sessia": sessia})
    assert sessions["Status"]["code"] == 200
    (mine,) = sessions["Sessions"]
    assert (mine["ClientName"], mine["ClientVersion"]) == ("", "")
    # A client that is sent must still be well-formed.
    bad = await c.call("GetSessions", {"sessia": {**sessia, "client": {"hashcert": "x"}}})
    assert bad["Status"] == {"code": 400, "message": "sessia.client.nameclient: field is required"}


async def test_without_client_a_checking_server_answers_401(server, connect, user) -> None:
    alice = await user()
    c = await connect()
    sessia = {"tocken": alice.token, "device": {"deviceid": alice.device.deviceid}}
    answer = await c.call("GetSessions", {"sessia": sessia})
    assert answer["Status"] == {"code": 401, "message": "sessia.client is required: unverified client"}


@pytest.mark.parametrize("codec", [1, 2])
async def test_a_ping_in_either_codec_gets_a_msgpack_pong(server, codec: int) -> None:
    ping = HEADER.pack(MAGIC, VERSION, FrameKind.PING, codec, 0, 77, 0)
    ((kind, pong_codec, rid, payload),) = await raw_frames(server, ping, 1)
    assert (kind, pong_codec, rid, payload) == (FrameKind.PONG, Codec.MSGPACK, 77, b"")


async def test_a_ping_with_an_unknown_codec_is_refused_and_the_connection_goes_on(server) -> None:
    data = HEADER.pack(MAGIC, VERSION, FrameKind.PING, 3, 0, 78, 0) + HEADER.pack(
        MAGIC, VERSION, FrameKind.PING, 1, 0, 79, 0)
    (kind, codec, rid, payload), pong = await raw_frames(server, data, 2)
    assert (kind, codec, rid) == (FrameKind.ERROR, Codec.MSGPACK, 78)
    assert decode_body(codec, payload) == {"Status": {"code": 400, "message": "unknown codec 3"}}
    assert pong[:3] == (FrameKind.PONG, Codec.MSGPACK, 79)


async def test_flags_are_quoted_as_two_hex_digits(server) -> None:
    data = HEADER.pack(MAGIC, VERSION, FrameKind.PING, 1, 1, 80, 0)
    ((kind, codec, rid, payload),) = await raw_frames(server, data, 1)
    assert decode_body(codec, payload)["Status"]["message"] == "unknown flags 0x01"


async def test_a_nested_integer_key_names_its_map(server) -> None:
    body = b"\x81\xa6sessia\x81\x01\x02"
    frame = HEADER.pack(MAGIC, VERSION, FrameKind.REQUEST, 1, 0, 81, 1 + 4 + len(body)) + b"\x04Auth" + body
    ((kind, codec, rid, payload),) = await raw_frames(server, frame, 1)
    assert (kind, rid) == (FrameKind.RESPONSE, 81)
    assert decode_body(codec, payload)["Status"] == {"code": 400, "message": "sessia: field names must be strings"}


def registration(password: str) -> dict[str, Any]:
    login = f"p{secrets.token_hex(5)}"
    return {"login": {"login": login}, "password": {"password": password}, "email": {"email": f"{login}@example.org"},
            "sessia": {"device": {"deviceid": secrets.token_hex(8)}, "client": TEST_CLIENT}}


@pytest.mark.parametrize(
    ("password", "code", "message"),
    [
        ("seven77", 422, "password.password: shorter than 8 characters"),
        ("é" * 7, 422, "password.password: shorter than 8 characters"),  # characters, not bytes
        ("x" * 257, 422, "password.password: longer than 256 characters"),
        (None, 400, "password.password: field is required"),
    ],
)
async def test_password_length_errors_are_the_documented_ones(connect, password, code, message) -> None:
    c = await connect()
    answer = await c.call("Registration", registration(password))
    assert answer["Status"] == {"code": code, "message": message}


async def test_auth_with_a_too_long_password_is_422(connect) -> None:
    c = await connect()
    body = {"email": "nobody@example.org", "password": "x" * 257,
            "sessia": {"device": {"deviceid": "d1"}, "client": TEST_CLIENT}}
    answer = await c.call("Auth", body)
    assert answer["Status"] == {"code": 422, "message": "password: longer than 256 characters"}


@pytest.mark.parametrize(
    ("name", "body", "code", "message"),
    [
        ("Subscribe", {"after": "x"}, 400, "after: must be an integer"),
        ("Subscribe", {"after": -1}, 422, "after: must be at least 0"),
        ("GetEvents", {}, 400, "after: field is required"),
        ("GetEvents", {"after": 0, "take": 0}, 422, "take: must be at least 1"),
        ("GetEvents", {"after": 0, "take": 1001}, 422, "take: must be at most 1000"),
        ("MarkRead", {"msgkey": "abcdefgh"}, 400, "pkDialog: field is required"),
        ("MarkRead", {"pkDialog": "d" * 32}, 400, "msgkey: field is required"),
        ("MarkRead", {"pkDialog": "d" * 32, "msgkey": "short"}, 422,
         "msgkey: 8 to 64 characters of 0-9, a-z, A-Z, '_' or '-'"),
        ("MarkRead", {"pkDialog": "d" * 32, "msgkey": "abcdefgh"}, 404, "dialog not found"),
        ("Typing", {}, 400, "pkDialog: field is required"),
        ("Typing", {"pkDialog": "d" * 32}, 404, "dialog not found"),
        ("Unsubscribe", {}, 200, "Unsubscribed"),
    ],
)
async def test_sync_and_presence_statuses_are_the_documented_ones(user, name, body, code, message) -> None:
    alice = await user()
    answer = await alice.call(name, body)
    assert answer["Status"] == {"code": code, "message": message}


async def test_disable_answers_session_closed(user) -> None:
    alice = await user()
    assert (await alice.call("disable", {}))["Status"] == {"code": 200, "message": "Session closed"}

