"""Writes docs/vectors/frames.json: conformance vectors for client authors.

    python -m tests.make_vectors          # rewrite the file
    python -m tests.make_vectors --check  # exit 1 if the file is not what this writes

Each vector is one frame (or a refused byte string) as hex, with what it
means: kind, codec, flags, request id, name, decoded body, and, where the real
server answers it, that answer.  A client in any language replays them
against its own codec without a server (``tests/test_vectors.py`` replays them
against ``protocol/`` and the refused ones against the real server).

It lives in ``tests/`` rather than ``bench/`` because it is a test fixture's
generator: it builds its frames with ``protocol/`` and reuses the sample
events of ``tests/test_typed_shapes.py`` (one per kind), and
``tests/test_vectors.py`` runs it to check the committed file is current.
Everything in it is fixed (no random token, no clock), so the output is the
same byte for byte on every run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from protocol.codecs import Codec, encode_body
from protocol.events import DialogGap, Typing
from protocol.frames import (
    HEADER,
    MAGIC,
    VERSION,
    FrameKind,
    encode_error,
    encode_ping,
    encode_pong,
    encode_push,
    encode_request,
    encode_response,
)

from .support import TEST_CLIENT
from .test_typed_shapes import DIALOG, EVENTS, MSG

OUT = Path(__file__).resolve().parent.parent / "docs" / "vectors" / "frames.json"
#: A well-formed token no server issued: every request that needs a session
#: is answered 401 with it, on any server that knows the test client build.
TOKEN = "0" * 64 + "?1"
SESSIA = {"tocken": TOKEN, "device": {"deviceid": "vector-device"}, "client": TEST_CLIENT}
LOGIN_SESSIA = {"device": {"deviceid": "vector-device", "os": "Linux"}, "client": TEST_CLIENT}
NOT_LOGGED_IN = {"Status": {"code": 401, "message": "invalid or revoked token"}}
UPLOAD = "5e55a0c1d2e3f405162738495a6b7c8d"
#: ``GetMedia`` by range: (body, answer with a made-up token, example success answer).
GET_MEDIA_RANGE = (
    {"hash": "0c1d2e3f405162738495a6b7c8d9eafb", "offset": 2097152, "limit": 1048576, "sessia": SESSIA},
    NOT_LOGGED_IN,
    {"Status": {"code": 200, "message": "Media sent"}, "BytesBase64": b"\x00\x00\x00\x18ftypmp42",
     "Extension": "mp4", "Hash": "0c1d2e3f405162738495a6b7c8d9eafb", "Offset": 2097152, "Size": 2097164},
)

#: One request per name: (body, answer body from a server that knows
#: TEST_CLIENT, example success answer).
REQUESTS: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "Registration": (
        {"login": {"login": "vector"}, "password": {"password": "short"}, "email": {"email": "vector@example.org"},
         "sessia": LOGIN_SESSIA},
        {"Status": {"code": 422, "message": "password.password: shorter than 8 characters"}},
        {"Status": {"code": 200, "message": "Operation done"}, "Tocken": "9f2c" + "0" * 60 + "?42", "Id": 42},
    ),
    "Auth": (
        {"email": "nobody.vector@example.org", "password": "correct horse battery", "sessia": LOGIN_SESSIA},
        {"Status": {"code": 401, "message": "wrong email or password"}},
        {"Status": {"code": 200, "message": "Session is valid"}, "Tocken": "9f2c" + "0" * 60 + "?42", "Id": 42},
    ),
    "disable": ({"sessia": SESSIA}, NOT_LOGGED_IN, {"Status": {"code": 200, "message": "Session closed"}}),
    "Email": ({"email": "new@example.org", "sessia": SESSIA}, NOT_LOGGED_IN,
              {"Status": {"code": 200, "message": "code sent to the email"}}),
    "Media": ({"extension": "png", "bytes": b"\x89PNG\r\n\x1a\n\x00\x01", "sessia": SESSIA}, NOT_LOGGED_IN,
              {"Status": {"code": 200, "message": "Media uploaded"}, "Key": "0c1d2e3f405162738495a6b7c8d9eafb"}),
    "GetMedia": ({"hash": "0c1d2e3f405162738495a6b7c8d9eafb", "sessia": SESSIA}, NOT_LOGGED_IN,
                 {"Status": {"code": 200, "message": "Media sent"}, "BytesBase64": b"\x89PNG\r\n\x1a\n\x00\x01",
                  "Extension": "png", "Hash": "0c1d2e3f405162738495a6b7c8d9eafb"}),
    "ChangeUser": ({"nickname": "KrTv", "sessia": SESSIA}, NOT_LOGGED_IN,
                   {"Status": {"code": 200, "message": "profile updated"}, "Messages": ["nickname changed"]}),
    "GetUser": ({"id": 42, "sessia": SESSIA}, NOT_LOGGED_IN,
                {"Status": {"code": 200, "message": "user profile"}, "Id": 42, "Nickname": "KrTv", "Photo": ""}),
    "RequestFrBl": ({"operation": "append", "id": 43, "sessia": SESSIA}, NOT_LOGGED_IN,
                    {"Status": {"code": 200, "message": "Friend request sent"}, "State": "requested"}),
    "CreateDialog": ({"dialog": {"name": "club", "private": True, "idUsers": [43]}, "sessia": SESSIA}, NOT_LOGGED_IN,
                     {"Status": {"code": 200, "message": "Dialog started"}, "hash": DIALOG}),
    "ChangeDialog": ({"pkDialog": DIALOG, "dialog": {"name": "book club"}, "sessia": SESSIA}, NOT_LOGGED_IN,
                     {"Status": {"code": 200, "message": "Dialog changed"}}),
    "KickUser": ({"pkDialog": DIALOG, "id": 43, "sessia": SESSIA}, NOT_LOGGED_IN,
                 {"Status": {"code": 200, "message": "User removed from the dialog"}}),
    "GetDialogs": ({"date": "-1", "take": 20, "skip": 0, "sessia": SESSIA}, NOT_LOGGED_IN,
                   {"Status": {"code": 200, "message": "List formed"}, "Dialogs": []}),
    "GetUsersDialog": ({"pkDialog": DIALOG, "sessia": SESSIA}, NOT_LOGGED_IN,
                       {"Status": {"code": 200, "message": "List formed"}, "Users": []}),
    "SendMessage": ({"operation": "add", "pkDialog": DIALOG,
                     "message": {"infoMessage": {"msgkey": MSG, "content": "Привет"}}, "sessia": SESSIA},
                    NOT_LOGGED_IN, {"Status": {"code": 200, "message": "Message sent"}, "msgkey": MSG}),
    "GetMessages": ({"pkDialog": DIALOG, "date": "-1", "take": 10, "skip": 0, "sessia": SESSIA}, NOT_LOGGED_IN,
                    {"Status": {"code": 200, "message": "List formed"}, "Msg": [EVENTS[0].to_payload()["Msg"]]}),
    "GetDelMessages": ({"pkDialog": DIALOG, "date": "-1", "take": 10, "skip": 0, "sessia": SESSIA}, NOT_LOGGED_IN,
                       {"Status": {"code": 200, "message": "List formed"}, "Msg": []}),
    "Search": ({"operation": "everyWhere", "search": "club", "sessia": SESSIA}, NOT_LOGGED_IN,
               {"Status": {"code": 200, "message": "Dialogs found"}, "Dialogs": []}),
    "Subscribe": ({"after": 10, "sessia": SESSIA}, NOT_LOGGED_IN,
                  {"Status": {"code": 200, "message": "Subscribed"}, "LastSeq": 10}),
    "Unsubscribe": ({"sessia": SESSIA}, NOT_LOGGED_IN, {"Status": {"code": 200, "message": "Unsubscribed"}}),
    "GetEvents": ({"after": 0, "take": 100, "sessia": SESSIA}, NOT_LOGGED_IN,
                  {"Status": {"code": 200, "message": "Events"}, "Events": [], "LastSeq": 0, "Through": 0,
                   "More": False}),
    "GetDialogEvents": ({"pkDialog": DIALOG, "after": 12, "take": 100, "sessia": SESSIA}, NOT_LOGGED_IN,
                        {"Status": {"code": 200, "message": "Events"}, "Events": [], "LastPts": 12, "Through": 12,
                         "More": False}),
    "MarkRead": ({"pkDialog": DIALOG, "msgkey": MSG, "sessia": SESSIA}, NOT_LOGGED_IN,
                 {"Status": {"code": 200, "message": "Marked as read"}}),
    "Typing": ({"pkDialog": DIALOG, "sessia": SESSIA}, NOT_LOGGED_IN,
               {"Status": {"code": 200, "message": "Typing sent"}}),
    "GetSessions": ({"sessia": SESSIA}, NOT_LOGGED_IN,
                    {"Status": {"code": 200, "message": "sessions"}, "Sessions": []}),
    "RevokeSession": ({"id": 5, "sessia": SESSIA}, NOT_LOGGED_IN,
                      {"Status": {"code": 200, "message": "session revoked"}, "Revoked": [5]}),
    "ResetPassword": ({"email": "vector", "sessia": LOGIN_SESSIA},
                      {"Status": {"code": 422, "message": "email: not a valid email address"}},
                      {"Status": {"code": 200, "message": "password changed: log in with the new password"}}),
    "UploadStart": ({"size": 2500000, "extension": "mp4", "sha256": "9f86d081884c7d659a2feaa0c55ad015"
                     "a3bf4f1b2b0b822cd15d6c15b0f00a08", "sessia": SESSIA}, NOT_LOGGED_IN,
                    {"Status": {"code": 200, "message": "Upload started"}, "Upload": UPLOAD, "PartSize": 1048576,
                     "Parts": 3, "Resumed": False}),
    "UploadPart": ({"upload": UPLOAD, "part": 2, "bytes": b"\x00\x00\x00\x18ftypmp42", "sessia": SESSIA},
                   NOT_LOGGED_IN, {"Status": {"code": 200, "message": "Part stored"}, "Part": 2}),
    "UploadStatus": ({"upload": UPLOAD, "sessia": SESSIA}, NOT_LOGGED_IN,
                     {"Status": {"code": 200, "message": "Upload in progress"}, "Upload": UPLOAD, "Size": 2500000,
                      "PartSize": 1048576, "Parts": 3, "Missing": [0, 1]}),
    "UploadFinish": ({"upload": UPLOAD, "sessia": SESSIA}, NOT_LOGGED_IN,
                     {"Status": {"code": 200, "message": "Media uploaded"}, "Key": "0c1d2e3f405162738495a6b7c8d9eafb"}),
}

#: More requests of a name above, with other fields: (vector name, request
#: name, body, answer from a server that knows TEST_CLIENT, example success answer).
VARIANTS: list[tuple[str, str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ("GetMedia-thumb", "GetMedia", {"hash": "0c1d2e3f405162738495a6b7c8d9eafb", "thumb": "s", "sessia": SESSIA},
     NOT_LOGGED_IN,
     {"Status": {"code": 200, "message": "Thumbnail sent"}, "BytesBase64": b"\xff\xd8\xff\xe0\x00\x10JFIF",
      "Extension": "jpg", "Hash": "0c1d2e3f405162738495a6b7c8d9eafb", "Thumb": "s", "Width": 160, "Height": 107}),
]


def header(kind: int, codec: int, flags: int, request_id: int, length: int, magic: bytes = MAGIC,
           version: int = VERSION) -> bytes:
    return HEADER.pack(magic, version, kind, codec, flags, request_id, length)


def named(kind: int, codec: int, request_id: int, name: bytes, body: bytes, flags: int = 0) -> bytes:
    payload = bytes((len(name),)) + name + body
    return header(kind, codec, flags, request_id, len(payload)) + payload


def error(code: int, message: str) -> dict[str, Any]:
    return {"Status": {"code": code, "message": message}}


#: Byte strings the server refuses: (name, description, bytes, answer kind, answer body).
REFUSED: list[tuple[str, str, bytes, str, dict[str, Any]]] = [
    ("bad-magic", "not `SS`: fatal, answered with request id 0, then the connection closes",
     header(FrameKind.PING, 1, 0, 5, 0, magic=b"XX"), "ERROR", error(400, "bad magic: not a sessia frame")),
    ("bad-version", "version 2: fatal", header(FrameKind.PING, 1, 0, 6, 0, version=2),
     "ERROR", error(400, "unsupported protocol version 2")),
    ("client-sends-response", "kind 2 from a client: skipped", header(FrameKind.RESPONSE, 1, 0, 7, 1) + b"\x80",
     "ERROR", error(400, "unexpected frame kind 2")),
    ("unknown-codec", "codec 3: answered in msgpack", named(FrameKind.REQUEST, 3, 8, b"Auth", b"\x80"),
     "ERROR", error(400, "unknown codec 3")),
    ("nonzero-flags", "flags 1", named(FrameKind.REQUEST, 1, 9, b"Auth", b"\x80", flags=1),
     "ERROR", error(400, "unknown flags 0x01")),
    ("empty-name", "name length 0", header(FrameKind.REQUEST, 1, 0, 10, 1) + b"\x00",
     "ERROR", error(400, "bad request name")),
    ("bad-name-character", "a space in the name", named(FrameKind.REQUEST, 2, 11, b"Au h", b"{}"),
     "ERROR", error(400, "bad request name")),
    ("too-large", "a length over every limit: answered after the header alone",
     header(FrameKind.REQUEST, 1, 0, 12, 30_000_000), "ERROR",
     error(413, "frame payload of 30000000 bytes exceeds the limit of 28027562 bytes")),
    ("request-over-1mib", "an ordinary request over 1 MiB (only Media may be larger)",
     header(FrameKind.REQUEST, 1, 0, 13, 2_000_000) + b"\x04Auth", "ERROR",
     error(413, "frame payload of 2000000 bytes exceeds the limit of 1048576 bytes")),
    ("bad-msgpack", "the body is not msgpack (0xc1 is never used)", named(FrameKind.REQUEST, 1, 14, b"Auth", b"\xc1"),
     "RESPONSE", error(400, "body is not valid msgpack")),
    ("json-bom", "a JSON body with a byte-order mark", named(FrameKind.REQUEST, 2, 15, b"Auth", b"\xef\xbb\xbf{}"),
     "RESPONSE", error(400, "body is not valid JSON")),
    ("body-not-a-map", "a msgpack list as the body", named(FrameKind.REQUEST, 1, 16, b"Auth", b"\x92\x01\x02"),
     "RESPONSE", error(400, "body must be a map")),
    ("integer-key", "a nested map with an integer key",
     named(FrameKind.REQUEST, 1, 17, b"Auth", b"\x81\xa6sessia\x81\x01\x02"),
     "RESPONSE", error(400, "sessia: field names must be strings")),
    ("bin-key", "a bin key in the body", named(FrameKind.REQUEST, 1, 18, b"Auth", b"\x81\xc4\x01k\x01"),
     "RESPONSE", error(400, "body: field names must be strings")),
    ("unknown-request", "a name no request has (names are case-sensitive)",
     named(FrameKind.REQUEST, 2, 19, b"auth", b"{}"), "RESPONSE", error(400, "unknown request 'auth'")),
    ("missing-session", "a request that needs a session, without one",
     named(FrameKind.REQUEST, 2, 20, b"GetDialogs", b"{}"), "RESPONSE", error(400, "sessia: field is required")),
]


def wire_value(value: Any) -> Any:
    """A decoded body as JSON can hold it: msgpack ``bin`` as {"$bin": hex}."""
    if isinstance(value, (bytes, bytearray)):
        return {"$bin": bytes(value).hex()}
    if isinstance(value, dict):
        return {k: wire_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [wire_value(v) for v in value]
    return value


def json_value(value: Any) -> Any:
    """A body as the JSON codec carries it: bytes as base64 text."""
    return json.loads(encode_body(Codec.JSON, value)) if isinstance(value, dict) else value


def vector(name: str, description: str, frame: bytes, *, kind: str, codec: int, request_id: int,
           frame_name: str | None, body: dict[str, Any] | None, answer: dict[str, Any] | None = None) -> dict[str, Any]:
    if body is not None:
        body = wire_value(body) if codec == Codec.MSGPACK else json_value(body)
    out: dict[str, Any] = {
        "name": name, "description": description, "hex": frame.hex(), "kind": kind, "codec": codec, "flags": 0,
        "id": request_id, "frame_name": frame_name, "body": body, "valid": True,
    }
    if answer is not None:
        out["answer"] = answer
    return out


def build() -> dict[str, Any]:
    vectors: list[dict[str, Any]] = []
    rid = 100
    requests = [(name, name, *parts) for name, parts in REQUESTS.items()] + VARIANTS
    for i, (vector_name, name, body, answer, success) in enumerate(requests):
        codec = Codec.JSON if i % 2 else Codec.MSGPACK
        rid += 1
        vectors.append(vector(
            f"request-{vector_name}", f"a {name} request (a made-up token: a real server answers as stated)",
            encode_request(rid, name, body, codec), kind="REQUEST", codec=codec, request_id=rid, frame_name=name,
            body=body, answer={"kind": "RESPONSE", "body": json_value(answer)}))
        vectors.append(vector(
            f"response-{vector_name}", f"an example success answer to {name}", encode_response(rid, success, codec),
            kind="RESPONSE", codec=codec, request_id=rid, frame_name=None, body=success))
    for codec in (Codec.MSGPACK, Codec.JSON):
        suffix = "msgpack" if codec == Codec.MSGPACK else "json"
        body, answer, success = GET_MEDIA_RANGE
        rid += 1
        vectors.append(vector(
            f"request-GetMedia-range-{suffix}", "GetMedia of a range: 1 MiB from offset 2 MiB",
            encode_request(rid, "GetMedia", body, codec), kind="REQUEST", codec=codec, request_id=rid,
            frame_name="GetMedia", body=body, answer={"kind": "RESPONSE", "body": json_value(answer)}))
        vectors.append(vector(
            f"response-GetMedia-range-{suffix}", "a range's answer: the last 12 bytes of a file of 2097164",
            encode_response(rid, success, codec), kind="RESPONSE", codec=codec, request_id=rid, frame_name=None,
            body=success))
    for i, event in enumerate(EVENTS):
        codec = Codec.JSON if i % 2 else Codec.MSGPACK
        body = {"Seq": 40 + i, "Kind": event.KIND, **event.to_payload()}
        vectors.append(vector(f"push-{event.KIND}-{i}", f"an Event push of kind {event.KIND}",
                              encode_push("Event", body, codec), kind="PUSH", codec=codec, request_id=0,
                              frame_name="Event", body=body))
    for i, event in enumerate(e for e in EVENTS if e.dialog is not None):
        codec = Codec.JSON if i % 2 else Codec.MSGPACK
        body = {"Pts": 13 + i, "Kind": event.KIND, **event.to_payload()}
        vectors.append(vector(f"push-DialogEvent-{event.KIND}-{i}", f"a large dialog's event of kind {event.KIND}",
                              encode_push("DialogEvent", body, codec), kind="PUSH", codec=codec, request_id=0,
                              frame_name="DialogEvent", body=body))
    for codec in (Codec.MSGPACK, Codec.JSON):
        suffix = "msgpack" if codec == Codec.MSGPACK else "json"
        typing = Typing(DIALOG, 43).to_payload()
        vectors.append(vector(f"push-Typing-{suffix}", "someone is typing", encode_push("Typing", typing, codec),
                              kind="PUSH", codec=codec, request_id=0, frame_name="Typing", body=typing))
        vectors.append(vector(f"push-Resync-{suffix}", "the subscription was dropped: subscribe again",
                              encode_push("Resync", {"LastSeq": 57}, codec), kind="PUSH", codec=codec,
                              request_id=0, frame_name="Resync", body={"LastSeq": 57}))
        gap = DialogGap(DIALOG, 120000).to_payload()
        vectors.append(vector(f"push-DialogGap-{suffix}", "a large dialog's log no longer reaches back: reload it",
                              encode_push("DialogGap", gap, codec), kind="PUSH", codec=codec,
                              request_id=0, frame_name="DialogGap", body=gap))
        vectors.append(vector(f"error-{suffix}", "an ERROR frame: the body is the Status alone",
                              encode_error(4, 413, "frame payload of 2000000 bytes exceeds the limit of 1048576 bytes",
                                           codec), kind="ERROR", codec=codec, request_id=4, frame_name=None,
                              body=error(413, "frame payload of 2000000 bytes exceeds the limit of 1048576 bytes")))
    vectors.append(vector("ping", "a PING, codec 1, empty payload", encode_ping(3), kind="PING", codec=1,
                          request_id=3, frame_name=None, body=None, answer={"kind": "PONG", "body": None}))
    ping_json = header(FrameKind.PING, Codec.JSON, 0, 9, 0)
    vectors.append(vector("ping-json", "a PING with codec 2: accepted; the PONG is codec 1 all the same", ping_json,
                          kind="PING", codec=2, request_id=9, frame_name=None, body=None,
                          answer={"kind": "PONG", "body": None}))
    vectors.append(vector("pong", "the PONG to PING 3: always codec 1", encode_pong(3), kind="PONG", codec=1,
                          request_id=3, frame_name=None, body=None))
    for name, description, data, answer_kind, answer in REFUSED:
        _, _, kind, codec, flags, request_id, _ = HEADER.unpack_from(data)
        frame_name = None
        if kind == FrameKind.REQUEST and len(data) > 14 and 0 < data[14] <= 64 and len(data) >= 15 + data[14]:
            frame_name = data[15:15 + data[14]].decode("ascii", "replace")
        vectors.append({
            "name": f"refused-{name}", "description": description, "hex": data.hex(),
            "kind": FrameKind(kind).name if kind in FrameKind._value2member_map_ else kind, "codec": codec,
            "flags": flags, "id": request_id, "frame_name": frame_name, "body": None, "valid": False,
            "answer": {"kind": answer_kind, "body": answer},
        })
    return {"version": 1, "vectors": vectors}


def render() -> str:
    return json.dumps(build(), ensure_ascii=False, indent=1) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = OUT.read_text() if OUT.exists() else ""
        if current != text:
            print(f"{OUT} is not current: run python -m tests.make_vectors", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"{OUT}: {len(build()['vectors'])} vectors")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
