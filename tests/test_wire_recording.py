"""The wire does not change by accident: a fixed script of requests, recorded.

The script below speaks raw frames to a fresh server on a fresh database and
keeps every frame the server sends, per connection: answers in request order,
pushes in arrival order.  The frames are compared byte for byte with
``tests/recordings/wire.jsonl`` (header and body: 14 bytes, then the payload), after masking what differs
from run to run by nature: dates (their digits become ``0``) and values the
server makes up at random (tokens, keys, codes), each replaced by a
placeholder of the same length, numbered by first appearance, so the
recording still says where the same token or key comes back.

A change that is meant to change the wire re-records with
``SESSIA_RECORD_WIRE=1 make test PYTEST_ARGS=tests/test_wire_recording.py``
and commits the new recording; the diff of that file is the wire change,
for review.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import time
from pathlib import Path
from typing import Any

import orjson

from protocol.codecs import Codec, decode_body
from protocol.frames import HEADER_SIZE, FrameKind, encode_ping, encode_request

from .support import TEST_CLIENT, MailBox, ServerProcess, code_from

RECORDING = Path(__file__).parent / "recordings" / "wire.jsonl"
PASSWORD = "correct horse battery"
DATE = re.compile(rb"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)?")
QUIET = 0.4  # seconds without a frame after which a connection's pushes are all in


class Masks:
    """Values made up at random, each mapped to a same-length placeholder."""

    def __init__(self) -> None:
        self.values: dict[bytes, bytes] = {}

    def add(self, value: Any, label: str) -> None:
        raw = str(value).encode()
        if len(raw) < 4 or raw in self.values:
            return
        tag = f"<{label}{len(self.values) + 1}>".encode()
        self.values[raw] = (tag + b"_" * len(raw))[: len(raw)]

    def apply(self, data: bytes) -> bytes:
        data = DATE.sub(lambda m: re.sub(rb"\d", b"0", m.group(0)), data)
        for value in sorted(self.values, key=len, reverse=True):
            data = data.replace(value, self.values[value])
            # The JSON codec writes bytes as base64: mask that form too.
            data = data.replace(base64.b64encode(value), base64.b64encode(self.values[value]))
        return data


class Conn:
    """One raw connection; every frame it receives is kept, answers apart from pushes."""

    def __init__(self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.name = name
        self.reader = reader
        self.writer = writer
        self.answers: dict[int, asyncio.Future[bytes]] = {}
        self.frames: list[tuple[str, bytes]] = []  # ("answer" | "push", raw frame bytes)
        self.last_frame = time.monotonic()
        self.next_id = 1
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        """Cut frames by their header (14 bytes, payload length last); keep each whole."""
        buf = b""
        while data := await self.reader.read(1 << 16):
            buf += data
            while len(buf) >= HEADER_SIZE and len(buf) >= HEADER_SIZE + int.from_bytes(buf[10:14], "big"):
                end = HEADER_SIZE + int.from_bytes(buf[10:14], "big")
                raw, buf = buf[:end], buf[end:]
                self.last_frame = time.monotonic()
                kind, request_id = raw[3], int.from_bytes(raw[6:10], "big")
                self.frames.append(("push" if kind == FrameKind.PUSH else "answer", raw))
                future = self.answers.pop(request_id, None) if kind != FrameKind.PUSH else None
                if future is not None and not future.done():
                    future.set_result(raw)
        for future in self.answers.values():
            if not future.done():
                future.set_exception(ConnectionError(f"{self.name}: closed by the server"))

    async def request(self, name: str, body: dict[str, Any], codec: int = Codec.MSGPACK) -> dict[str, Any]:
        request_id, self.next_id = self.next_id, self.next_id + 1
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.answers[request_id] = future
        self.writer.write(encode_request(request_id, name, body, codec))
        raw = await asyncio.wait_for(future, 15)
        return decode_body(raw[4], raw[HEADER_SIZE:])

    async def ping(self) -> None:
        request_id, self.next_id = self.next_id, self.next_id + 1
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.answers[request_id] = future
        self.writer.write(encode_ping(request_id))
        await asyncio.wait_for(future, 15)

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass
        await asyncio.wait_for(self.task, 5)


class Script:
    """Runs the fixed script; ``lines()`` is what gets recorded."""

    def __init__(self, server: ServerProcess, smtp: MailBox) -> None:
        self.server = server
        self.smtp = smtp
        self.masks = Masks()
        self.conns: dict[str, Conn] = {}
        self.tokens: dict[str, str] = {}
        self.ids: dict[str, int] = {}

    async def open(self, name: str) -> Conn:
        reader, writer = await asyncio.open_connection(self.server.host, self.server.port)
        conn = Conn(name, reader, writer)
        self.conns[name] = conn
        return conn

    def login_sessia(self, device: str) -> dict[str, Any]:
        return {"device": {"deviceid": device, "os": "Linux", "mac": "00:11", "hostname": "rec"}, "client": TEST_CLIENT}

    def sessia(self, who: str) -> dict[str, Any]:
        device = {"alice3": "dev-alice2", "carol2": "dev-carol"}.get(who, f"dev-{who}")
        return {"tocken": self.tokens[who], "device": {"deviceid": device}, "client": TEST_CLIENT}

    async def call(self, conn: str, who: str | None, name: str, body: dict[str, Any] | None = None,
                   codec: int = Codec.MSGPACK) -> dict[str, Any]:
        body = dict(body or {})
        if who is not None:
            body["sessia"] = self.sessia(who)
        answer = await self.conns[conn].request(name, body, codec)
        for key in ("Tocken", "Key", "hash", "msgkey", "msgKey"):
            if isinstance(answer.get(key), str):
                self.masks.add(answer[key], key[:3].lower())
        return answer

    async def code(self, address: str, after: int) -> str:
        code = code_from(await self.smtp.wait_for(address, after=after))
        self.masks.add(code, "code")
        return code

    async def settle(self) -> None:
        """Every connection has had its pushes: a PING round trip each, then quiet."""
        for conn in self.conns.values():
            if not conn.task.done():  # the server closes a connection whose session ended
                await conn.ping()
        while any(time.monotonic() - c.last_frame < QUIET for c in self.conns.values()):
            await asyncio.sleep(0.05)

    def lines(self) -> list[str]:
        out = []
        for name, conn in self.conns.items():
            for stream in ("answer", "push"):
                frames = [self.masks.apply(raw) for kind, raw in conn.frames if kind == stream]
                frames = [f for f in frames if f[3] != FrameKind.PONG]
                out.extend(f"{name} {stream} {i} {raw.hex()}" for i, raw in enumerate(frames))
        return out


async def run_script(s: Script) -> None:
    """Every request of the API at least once, with the pushes it causes, both codecs."""
    users = {"alice": Codec.MSGPACK, "bob": Codec.MSGPACK, "carol": Codec.JSON}
    for who, codec in users.items():
        await s.open(who)
        answer = await s.call(who, None, "Registration", {
            "login": {"login": who}, "password": {"password": PASSWORD}, "email": {"email": f"{who}@example.org"},
            "sessia": s.login_sessia(f"dev-{who}"),
        }, codec)
        s.tokens[who], s.ids[who] = answer["Tocken"], answer["Id"]
    alice, bob, carol = s.ids["alice"], s.ids["bob"], s.ids["carol"]
    for who, codec in users.items():
        await s.call(who, who, "Subscribe", {}, codec)

    # Errors: a bad token, a missing field, an unknown request, a wrong type.
    await s.call("alice", None, "GetDialogs", {"sessia": {**s.sessia("alice"), "tocken": "x" * 43}})
    await s.call("alice", "alice", "GetMessages", {})
    await s.call("alice", "alice", "NoSuchRequest", {})
    await s.call("alice", "alice", "GetUser", {"id": "one"})

    # A second device of alice, by password, then by token.
    await s.open("alice2")
    answer = await s.call("alice2", None, "Auth", {"email": "alice@example.org", "password": PASSWORD,
                                                   "sessia": s.login_sessia("dev-alice2")})
    s.tokens["alice2"] = answer["Tocken"]
    await s.call("alice2", "alice2", "Subscribe", {"after": 0})
    await s.call("alice2", None, "Auth", {"sessia": {**s.sessia("alice2"), "device": {"deviceid": "dev-alice2"}}})
    await s.call("alice", "alice", "GetSessions", {"take": 10, "skip": 0})

    # Friends and blocks.
    await s.call("alice", "alice", "RequestFrBl", {"operation": "append", "id": bob, "description": "met at work"})
    await s.call("bob", "bob", "RequestFrBl", {"operation": "getIncoming", "take": 10, "skip": 0})
    await s.call("alice", "alice", "RequestFrBl", {"operation": "getOutcoming", "take": 10, "skip": 0})
    await s.call("bob", "bob", "RequestFrBl", {"operation": "accept", "id": alice, "description": "alice"})
    await s.call("alice", "alice", "RequestFrBl", {"operation": "update", "id": bob, "description": "bob"})
    await s.call("alice", "alice", "RequestFrBl", {"operation": "getFriend", "take": 10, "skip": 0})
    await s.call("carol", "carol", "RequestFrBl", {"operation": "append", "id": alice}, Codec.JSON)
    await s.call("carol", "carol", "RequestFrBl", {"operation": "cancel", "id": alice}, Codec.JSON)
    await s.call("bob", "bob", "RequestFrBl", {"operation": "remove", "id": alice})
    await s.call("carol", "carol", "RequestFrBl", {"operation": "addBlock", "id": bob}, Codec.JSON)
    await s.call("carol", "carol", "RequestFrBl", {"operation": "listBlocks", "take": 10, "skip": 0}, Codec.JSON)
    await s.call("carol", "carol", "RequestFrBl", {"operation": "delBlock", "id": bob}, Codec.JSON)
    await s.call("carol", "carol", "RequestFrBl", {"operation": "accept", "id": bob}, Codec.JSON)

    # Media, profiles.
    photo = await s.call("alice", "alice", "Media", {"extension": "png", "bytes": b"\x89PNG\r\n\x1a\n" + b"p" * 64})
    await s.call("alice", "alice", "GetMedia", {"hash": photo["Key"]})
    await s.call("carol", "carol", "Media", {"extension": "txt", "bytes": base64.b64encode(b"notes").decode()},
                 Codec.JSON)
    await s.call("alice", "alice", "ChangeUser", {"nickname": "Alice A.", "imagekey": photo["Key"]})
    await s.call("bob", "bob", "GetUser", {"id": alice})
    before = s.smtp.count()
    await s.call("bob", "bob", "Email", {"email": "bob@example.org"})
    await s.call("bob", "bob", "Email", {"code": await s.code("bob@example.org", before)})
    await s.call("bob", "bob", "Email", {"code": "000000"})

    # A dialog of three, its messages, and everything one can do to them.
    dialog = (await s.call("alice", "alice", "CreateDialog", {
        "dialog": {"name": "Team", "private": True, "idUsers": [bob, carol], "photo": photo["Key"]}}))["hash"]
    await s.call("alice", "alice", "SendMessage", {"operation": "add", "message": {
        "infoMessage": {"pkDialog": dialog, "content": "hello team", "msgkey": "rec-msg-1", "important": True}}})
    shot = await s.call("bob", "bob", "Media", {"extension": "jpg", "bytes": b"\xff\xd8\xff" + b"j" * 40})
    await s.call("bob", "bob", "SendMessage", {"operation": "add", "message": {
        "infoMessage": {"pkDialog": dialog, "content": "with a photo", "msgkey": "rec-msg-2"},
        "hash": [shot["Key"]], "order": [1]}})
    await s.call("carol", "carol", "SendMessage", {"operation": "add", "message": {
        "infoMessage": {"pkDialog": dialog, "content": "no key given"}}}, Codec.JSON)
    await s.call("carol", "carol", "SendMessage", {"operation": "add", "message": {
        "infoMessage": {"pkDialog": dialog, "forwardedKey": "rec-msg-2", "content": "", "msgkey": "rec-msg-3"}}},
        Codec.JSON)
    await s.call("alice", "alice", "SendMessage", {"operation": "edit", "message": {
        "infoMessage": {"pkDialog": dialog, "msgkey": "rec-msg-1", "content": "hello, team"}}})
    await s.call("bob", "bob", "MarkRead", {"pkDialog": dialog, "msgkey": "rec-msg-1"})
    await s.call("bob", "bob", "Typing", {"pkDialog": dialog})
    await s.call("bob", "bob", "SendMessage", {"operation": "deleteOnlyMe", "message": {
        "infoMessage": {"pkDialog": dialog, "msgkey": "rec-msg-1"}}})
    await s.call("alice", "alice", "SendMessage", {"operation": "delete", "message": {
        "infoMessage": {"pkDialog": dialog, "msgkey": "rec-msg-3"}}})
    await s.call("bob", "bob", "SendMessage", {"operation": "edit", "message": {
        "infoMessage": {"pkDialog": dialog, "msgkey": "rec-msg-1", "content": "not mine"}}})
    await s.call("alice", "alice", "GetMessages", {"pkDialog": dialog, "date": "-1", "take": 10, "skip": 0})
    await s.call("bob", "bob", "GetMessages", {"pkDialog": dialog, "date": "-1", "take": 10, "skip": 0})
    await s.call("carol", "carol", "GetMessages", {"pkDialog": dialog, "msgkey": "rec-msg-2"}, Codec.JSON)
    await s.call("alice", "alice", "GetMessages", {"pkDialog": dialog, "date": "2000-01-01T00:00:00+00:00",
                                                   "take": 10, "skip": 0})
    await s.call("alice", "alice", "GetDelMessages", {"pkDialog": dialog, "date": "-1", "take": 10, "skip": 0})
    await s.call("bob", "bob", "GetDialogs", {"date": "-1", "take": 10, "skip": 0})
    await s.call("carol", "carol", "GetDialogs", {"date": "-1", "take": 10, "skip": 0}, Codec.JSON)
    await s.call("alice", "alice", "GetUsersDialog", {"pkDialog": dialog})
    await s.call("alice", "alice", "GetMedia", {"PkDialog": dialog, "take": 10, "skip": 0})
    await s.call("alice", "alice", "Search", {"operation": "everyWhere", "search": "Team", "takedialogs": 10,
                                              "skipdialogs": 0})
    await s.call("alice", "alice", "Search", {"operation": "inDialogs", "dialogs": [dialog], "search": "photo",
                                              "take": 10, "skip": 0})

    # Changing the dialog: rename, open it, admins, a public one to join, kick and leave.
    await s.call("alice", "alice", "ChangeDialog", {"dialog": {"pkDialog": dialog, "name": "Team 2",
                                                               "private": False, "admins": [bob]}})
    await s.call("carol", "carol", "ChangeDialog", {"dialog": {"pkDialog": dialog, "name": "mine"}}, Codec.JSON)
    public = (await s.call("bob", "bob", "CreateDialog", {"dialog": {"name": "Open room", "private": False,
                                                                     "idUsers": []}}))["hash"]
    await s.call("carol", "carol", "ChangeDialog", {"dialog": {"pkDialog": public, "IdUsers": [carol]}}, Codec.JSON)
    await s.call("bob", "bob", "ChangeDialog", {"dialog": {"pkDialog": public, "IdUsers": [alice]}})
    await s.call("bob", "bob", "KickUser", {"PkDialog": dialog, "user": carol})
    await s.call("carol", "carol", "GetMessages", {"pkDialog": dialog, "date": "-1", "take": 10, "skip": 0},
                 Codec.JSON)
    await s.call("alice", "alice", "KickUser", {"PkDialog": public, "user": alice})
    await s.call("bob", "bob", "GetUsersDialog", {"pkDialog": public})

    # Catch-up, as a device that was away would ask for it.
    await s.settle()
    await s.call("alice2", "alice2", "Unsubscribe", {})
    await s.call("alice2", "alice2", "GetEvents", {"after": 0, "limit": 100})
    await s.call("carol", "carol", "GetEvents", {"after": 3, "limit": 5}, Codec.JSON)

    # A dialog that grows past --large-dialog-members (3 here): its own log, followed by Pts.
    await s.open("dave")
    answer = await s.call("dave", None, "Registration", {
        "login": {"login": "dave"}, "password": {"password": PASSWORD}, "email": {"email": "dave@example.org"},
        "sessia": s.login_sessia("dev-dave"),
    })
    s.tokens["dave"] = answer["Tocken"]
    await s.call("dave", "dave", "Subscribe", {})
    big = (await s.call("alice", "alice", "CreateDialog", {
        "dialog": {"name": "Big", "private": False, "idUsers": [bob, carol]}}))["hash"]
    await s.call("dave", "dave", "ChangeDialog", {"dialog": {"pkDialog": big, "IdUsers": [answer["Id"]]}})
    await s.call("alice", "alice", "SendMessage", {"operation": "add", "message": {
        "infoMessage": {"pkDialog": big, "content": "to the big room", "msgkey": "rec-msg-big"}}})
    await s.settle()
    await s.call("bob", "bob", "GetDialogEvents", {"pkDialog": big, "after": 0})
    await s.call("carol", "carol", "GetDialogEvents", {"pkDialog": big, "after": 1, "take": 1}, Codec.JSON)

    # Sessions: revoke one device, change the password (others logged out), reset by mail, disable.
    await s.open("bob2")
    answer = await s.call("bob2", None, "Auth", {"email": "bob@example.org", "password": PASSWORD,
                                                 "sessia": s.login_sessia("dev-bob2")})
    s.tokens["bob2"] = answer["Tocken"]
    sessions = await s.call("bob", "bob", "GetSessions", {"take": 10, "skip": 0})
    other = [item["Id"] for item in sessions["Sessions"] if item["DeviceId"] == "dev-bob2"]
    await s.call("bob", "bob", "RevokeSession", {"id": other[0] if other else 0})
    await s.call("bob2", "bob2", "GetDialogs", {"date": "-1", "take": 10, "skip": 0})
    await s.call("alice", "alice", "ChangeUser", {"oldPass": PASSWORD, "newPass": PASSWORD + " 2"})
    await s.open("alice3")  # alice2's connection was closed with its session: its token, anew
    s.tokens["alice3"] = s.tokens["alice2"]
    await s.call("alice3", "alice3", "GetDialogs", {"date": "-1", "take": 10, "skip": 0})
    await s.open("reset")
    before = s.smtp.count()
    await s.call("reset", None, "ResetPassword", {"email": "bob@example.org", "sessia": s.login_sessia("dev-r")})
    code = await s.code("bob@example.org", before)
    await s.call("reset", None, "ResetPassword", {"email": "bob@example.org", "code": code,
                                                  "newPass": PASSWORD + " 3", "sessia": s.login_sessia("dev-r")})
    await s.call("carol", "carol", "disable", {}, Codec.JSON)
    await s.open("carol2")
    s.tokens["carol2"] = s.tokens["carol"]
    await s.call("carol2", "carol2", "GetDialogs", {"date": "-1", "take": 10, "skip": 0}, Codec.JSON)
    await s.settle()


async def test_the_wire_is_byte_for_byte_the_recorded_one(start_server, smtp: MailBox) -> None:
    server = start_server("--large-dialog-members", "3")
    script = Script(server, smtp)
    try:
        await run_script(script)
    finally:
        for conn in script.conns.values():
            await conn.close()
    lines = script.lines()
    if os.environ.get("SESSIA_RECORD_WIRE"):
        RECORDING.parent.mkdir(exist_ok=True)
        RECORDING.write_text("\n".join(lines) + "\n")
    recorded = RECORDING.read_text().splitlines()
    for i, (got, want) in enumerate(zip(lines, recorded, strict=False)):
        assert got == want, f"frame {i} differs:\n got  {_show(got)}\n want {_show(want)}"
    assert len(lines) == len(recorded), f"{len(lines)} frames, the recording has {len(recorded)}"


def _show(line: str) -> str:
    """A recorded line made readable: who, which stream, and the frame's body decoded."""
    name, stream, index, raw_hex = line.split(" ")
    raw = bytes.fromhex(raw_hex)
    body = raw[HEADER_SIZE:]
    if raw[3] == FrameKind.PUSH:
        body = body[1 + body[0]:]
    try:
        shown = orjson.dumps(decode_body(raw[4], body), default=repr).decode()
    except Exception:  # a readable line is a convenience; the hex below is what counts
        shown = "(undecodable)"
    return f"{name} {stream} {index} {shown}\n      {raw_hex}"
