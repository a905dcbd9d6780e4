"""The typed shapes of protocol/answers.py and protocol/events.py say exactly
what the wire says.

- Every answer item and every event kind round-trips: ``from_wire(to_wire(x))
  == x`` and ``from_payload(to_payload(x)) == x``, with realistic values.
- Every event kind's payload has exactly the keys docs/protocol.md lists for
  it, and docs/protocol.md lists no kind that ``KINDS`` lacks.
- Every item and event of the wire recording (tests/recordings/wire.jsonl,
  real server output) reads into its typed class and writes back to the same
  map, so the typed classes agree with what the server actually sends.
- The SDK's event stream yields them typed, with their seq, and skips kinds
  and push names it does not know.

No server is needed: these run in milliseconds.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from client_sdk.subscription import EventStream, Update
from client_sdk.transport import CLIENT_ACCEPTS, Push
from protocol import events as ev
from protocol.answers import DialogItem, MediaItem, MessageItem, SessionItem, UserItem
from protocol.codecs import decode_body
from protocol.frames import Decoder, Frame

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL_MD = ROOT / "docs" / "protocol.md"
RECORDING = Path(__file__).parent / "recordings" / "wire.jsonl"

SENT = datetime(2024, 5, 14, 20, 30, 3, 81234, tzinfo=UTC)
EDITED = datetime(2024, 5, 14, 20, 31, 44, 500001, tzinfo=UTC)
DELETED = datetime(2024, 5, 15, 7, 2, 9, 1, tzinfo=UTC)
DIALOG = "9f3b2c1d4e5f60718293a4b5c6d7e8f9"
MSG = "5accfeddc9afdec25e45cca089bac5b0"
PHOTO = "0c1d2e3f405162738495a6b7c8d9eafb"

MESSAGES = [
    MessageItem(MSG, 42, SENT, "Привет, Bob!"),
    MessageItem(MSG, 42, SENT, "look at this", updated_at=EDITED, forwarded_key="f262756d04f030755743b2f6dfbf983b",
                important=True, media=(PHOTO, "1c1d2e3f405162738495a6b7c8d9eafb"), order=(1, 2), read=True),
    MessageItem(MSG, 42, SENT, "", updated_at=EDITED, deleted_at=DELETED, read=False),  # a tombstone
    MessageItem(MSG, None, SENT, "by an account that is gone", read=False),
]

ITEMS: list[Any] = [
    *MESSAGES,
    DialogItem(DIALOG, "Trip to Kazan", PHOTO, True, "owner", SENT, EDITED, unread=3),
    DialogItem(DIALOG, "", None, False, "member", SENT, None),
    UserItem(42, "KrTv", PHOTO),
    UserItem(43, "bob", None, note="met at the conference"),
    UserItem(44, "carol", None, note=""),
    MediaItem(PHOTO, "png", 48_213, MSG, SENT),
    SessionItem(7, "0fcd6085918843d2", "Linux", "laptop", "RollaDieApp", "3", SENT, EDITED, current=True),
    SessionItem(8, "phone-1", "", "", "sessia-chat", "1", SENT, SENT, current=False),
]

EVENTS: list[ev.Event] = [
    ev.NewMessage(DIALOG, MESSAGES[0]._replace(read=False)),
    ev.NewMessage(DIALOG, MESSAGES[1]._replace(read=False)),
    ev.MessageEdited(DIALOG, MESSAGES[1]._replace(read=False)),
    ev.MessageDeleted(DIALOG, MSG, DELETED),
    ev.MessageHidden(DIALOG, MSG),
    ev.MessagesRead(DIALOG, reader=43, key=MSG),
    ev.DialogCreated(DIALOG, name="club", photo=None, private=True, owner=42),
    ev.DialogCreated(DIALOG, name="Open club", photo=PHOTO, private=False, owner=42),
    ev.DialogChanged(DIALOG, name="book club", photo=PHOTO, private=True),
    ev.MembersAdded(DIALOG, (43, 44)),
    ev.MemberKicked(DIALOG, removed=43, by=42),
    ev.MemberKicked(DIALOG, removed=44, by=44),  # left
    ev.FollowDialog(DIALOG, pts=17),
    ev.FriendRequest(from_id=42, to_id=43),
    ev.FriendAccepted(from_id=43, to_id=42),
    ev.FriendRequestCancelled(from_id=42, to_id=43),
    ev.FriendRemoved(from_id=43, to_id=42),
    ev.Blocked(43),
    ev.Unblocked(43),
]


@pytest.mark.parametrize("item", ITEMS, ids=lambda x: type(x).__name__)
def test_every_answer_item_round_trips(item: Any) -> None:
    wire = item.to_wire()
    assert type(item).from_wire(wire) == item
    assert type(item).from_wire(wire).to_wire() == wire


def test_read_not_worked_out_is_false_on_the_wire() -> None:
    """``read`` has one type everywhere, boolean: an event's message, whose
    ``read`` the server does not work out (None), carries ``false``."""
    wire = MessageItem(MSG, 42, SENT, "edited", read=None).to_wire()
    assert wire["infoMessage"]["read"] is False
    assert MessageItem.from_wire(wire).read is False


def test_every_item_class_is_covered() -> None:
    assert {type(i) for i in ITEMS} == {MessageItem, DialogItem, UserItem, MediaItem, SessionItem}


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.KIND)
def test_every_event_kind_round_trips(event: ev.Event) -> None:
    payload = event.to_payload()
    assert type(event).from_payload(payload) == event
    assert ev.parse_event(event.KIND, payload) == event
    assert ev.KINDS[event.KIND] is type(event)


def test_every_event_kind_is_covered() -> None:
    assert {e.KIND for e in EVENTS} == set(ev.KINDS)


def test_typing_round_trips() -> None:
    typing = ev.Typing(DIALOG, 42)
    assert ev.Typing.from_payload(typing.to_payload()) == typing


def test_an_unknown_kind_parses_to_none() -> None:
    assert ev.parse_event("SomethingNew", {"PkDialog": DIALOG}) is None


# -- docs/protocol.md -----------------------------------------------------------------


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n\n", text.index("|---|", start))
    return text[start:end]


def documented_event_fields() -> dict[str, list[str]]:
    """The kinds table of docs/protocol.md: kind -> the fields beside Seq and Kind,
    in the documented order (what is in parentheses is commentary)."""
    table = _section(PROTOCOL_MD.read_text(), "Event kinds (`Kind`) and their fields")
    fields: dict[str, list[str]] = {}
    for row in table.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        text = cells[1]
        while re.search(r"\([^()]*\)", text):
            text = re.sub(r"\([^()]*\)", "", text)
        for kind in re.findall(r"`(\w+)`", cells[0]):
            fields[kind] = re.findall(r"`(\w+)`", text)
    return fields


def documented_push_fields(name: str) -> list[str]:
    """The keys of a push body in the push table of docs/protocol.md."""
    table = _section(PROTOCOL_MD.read_text(), "| push name | body | meaning |")
    for row in table.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if cells[0] == f"`{name}`":
            return re.findall(r'"(\w+)"', cells[1])
    raise AssertionError(f"push {name} is not in docs/protocol.md")


def test_docs_list_exactly_the_known_kinds() -> None:
    assert set(documented_event_fields()) == set(ev.KINDS)


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.KIND)
def test_payload_keys_are_the_documented_fields(event: ev.Event) -> None:
    assert list(event.to_payload()) == documented_event_fields()[event.KIND]


def test_typing_keys_are_the_documented_ones() -> None:
    assert list(ev.Typing(DIALOG, 42).to_payload()) == documented_push_fields("Typing")


# -- the wire recording ------------------------------------------------------------------

MASKED_DATE = re.compile(r"^0000-00-00T00:00:00\.000000Z$")
SOME_DATE = "2000-01-01T00:00:00.000000Z"


def _unmask(value: Any) -> Any:
    """The recording's dates are masked to zeros; a real date of the same format
    in their place lets ``datetime`` read them and writes back identically."""
    if isinstance(value, str) and MASKED_DATE.match(value):
        return SOME_DATE
    if isinstance(value, dict):
        return {k: _unmask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unmask(v) for v in value]
    return value


def recorded_frames() -> list[tuple[str, str, dict[str, Any]]]:
    """(answer|push, frame name, body) of every frame of the recording."""
    out = []
    for line in RECORDING.read_text().splitlines():
        _who, what, _n, data = line.split()
        for frame in Decoder(CLIENT_ACCEPTS, 1 << 26).feed(bytes.fromhex(data)):
            assert isinstance(frame, Frame), frame
            body = decode_body(frame.codec, frame.body) if frame.body else {}
            out.append((what, frame.name, _unmask(body)))
    return out


def recorded_shapes() -> tuple[list[tuple[type, dict[str, Any]]], list[tuple[str, dict[str, Any]]], list[dict[str, Any]]]:
    """(item class, wire map) of every answer item; (``push`` or ``page``, body)
    of every event, pushed or paged by GetEvents; every Typing push body."""
    items: list[tuple[type, dict[str, Any]]] = []
    events: list[tuple[str, dict[str, Any]]] = []
    typing: list[dict[str, Any]] = []
    for what, name, body in recorded_frames():
        if what == "push":
            if name in (ev.PUSH_EVENT, ev.PUSH_DIALOG_EVENT):
                events.append(("push", body))
            elif name == ev.PUSH_TYPING:
                typing.append(body)
            continue
        items += [(MessageItem, m) for m in body.get("Msg") or []]
        items += [(DialogItem, d) for d in body.get("Dialogs") or [] if isinstance(d, dict)]
        items += [(UserItem, u) for u in body.get("Users") or []]
        items += [(SessionItem, s) for s in body.get("Sessions") or []]
        items += [(MediaItem, m) for m in body.get("Media") or []]
        if {"Id", "Nickname", "Photo"} <= body.keys():  # GetUser: the item beside Status
            items.append((UserItem, {k: v for k, v in body.items() if k != "Status"}))
        events += [("page", e) for e in body.get("Events") or []]
    return items, events, typing


def same_bytes(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal maps with their keys in the same order, at every depth (what the
    encoders write byte for byte)."""
    return orjson.dumps(a) == orjson.dumps(b)


def test_every_recorded_item_reads_and_writes_back_the_same() -> None:
    items, _, _ = recorded_shapes()
    assert {cls for cls, _ in items} == {MessageItem, DialogItem, UserItem, MediaItem, SessionItem}
    for cls, wire in items:
        assert same_bytes(cls.from_wire(wire).to_wire(), wire), (cls, wire)


def test_every_recorded_event_reads_and_writes_back_the_same() -> None:
    _, events, typing = recorded_shapes()
    assert {body["Kind"] for where, body in events if where == "push"} == set(ev.KINDS)
    documented = documented_event_fields()
    for where, body in events:
        # An event of the user's log is numbered by Seq, a large dialog's by Pts.
        number = "Seq" if "Seq" in body else "Pts"
        payload = {k: v for k, v in body.items() if k not in (number, "Kind")}
        event = ev.parse_event(body["Kind"], payload)
        assert event is not None
        if where == "push":
            assert same_bytes(event.to_payload(), payload), body
            assert list(payload) == documented[body["Kind"]]
        else:  # GetEvents / GetDialogEvents pages: the very shape of the push
            assert same_bytes(event.to_payload(), payload), body
            assert list(payload) == documented[body["Kind"]]
    assert typing
    for body in typing:
        assert same_bytes(ev.Typing.from_payload(body).to_payload(), body)


# -- the SDK's stream ------------------------------------------------------------------


class FakeTransport:
    def __init__(self, pushes: list[Push]) -> None:
        self.pushes: asyncio.Queue[Push] = asyncio.Queue()
        for push in pushes:
            self.pushes.put_nowait(push)
        self.push_overflow = 0
        self.is_open = True

    async def wait_closed(self) -> None:
        await asyncio.Event().wait()


class FakeClient:
    def __init__(self, pushes: list[Push]) -> None:
        self.transport = FakeTransport(pushes)

    async def request(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"LastSeq": 0}


async def test_the_stream_yields_typed_events_and_skips_what_it_does_not_know() -> None:
    new = ev.NewMessage(DIALOG, MESSAGES[0]._replace(read=False))
    pushes = [
        Push("Event", {"Seq": 1, "Kind": new.KIND, **new.to_payload()}),
        Push("Event", {"Seq": 2, "Kind": "SomethingNew", "PkDialog": DIALOG, "Whatever": [1, 2]}),
        Push("Typing", {"PkDialog": DIALOG, "Id": 43}),
        Push("SomePushOfTomorrow", {"x": 1}),
        Push("Event", {"Seq": 2, "Kind": "FriendRequest", "From": 1, "To": 2}),  # a replayed seq: skipped
        Push("Event", {"Seq": 3, "Kind": "Blocked", "Id": 44}),
    ]
    client: Any = FakeClient(pushes)  # the part of a Client the stream uses
    stream = EventStream(client, after=None, reconnect=False, max_backoff=0.1)
    got = [await asyncio.wait_for(anext(stream), 1) for _ in range(3)]
    assert got == [Update(1, new), Update(None, ev.Typing(DIALOG, 43)), Update(3, ev.Blocked(44))]
    assert stream.last_seq == 3
