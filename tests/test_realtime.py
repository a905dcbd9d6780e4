"""Real-time messaging: message and dialog events, read receipts, typing,
important and forwarded messages, and the slow-reader policy."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from client_sdk import NotFound, Update
from protocol.events import (
    DialogChanged,
    DialogCreated,
    MemberKicked,
    MembersAdded,
    MessageDeleted,
    MessageEdited,
    MessageHidden,
    MessagesRead,
    NewMessage,
    Typing,
)
from protocol.frames import HEADER, encode_request

from .support import TEST_CLIENT


async def next_event(stream, timeout: float = 10.0):
    return await asyncio.wait_for(stream.__anext__(), timeout)


async def events_until(stream, kind: type, timeout: float = 10.0):
    """Skip earlier events (e.g. DialogCreated) up to the first of ``kind``."""
    while True:
        update = await next_event(stream, timeout)
        if isinstance(update.event, kind):
            return update.event


async def test_new_message_reaches_members_and_senders_other_devices_only(user, connect):
    alice, bob, stranger = await user(), await user(), await user()
    alice_laptop = await connect()
    await alice_laptop.login(alice.email, alice.password)
    key = await alice.create_dialog("trip", members=[bob.user_id])
    bob_events = await bob.events().start()
    laptop_events = await alice_laptop.events().start()
    stranger_events = await stranger.events().start()

    msgkey = await alice.send_message(key, "Привет, Bob!")
    for stream in (bob_events, laptop_events):
        event = (await next_event(stream)).event
        assert isinstance(event, NewMessage)
        assert event.dialog_key == key
        assert (event.item.key, event.item.author_id, event.item.content) == (msgkey, alice.user_id, "Привет, Bob!")
    # The pushed message is exactly what history returns.
    assert event.item == await bob.message(key, msgkey)
    with pytest.raises(TimeoutError):
        await next_event(stranger_events, timeout=0.5)


async def test_edit_delete_and_hide_are_pushed_to_the_right_people(user):
    alice, bob = await user(), await user()
    key = await alice.create_dialog("edits", members=[bob.user_id])
    msgkey = await alice.send_message(key, "typo hree")
    bob_events = await bob.events().start()
    alice_events = await alice.events().start()

    await alice.edit_message(key, msgkey, "typo here")
    edited = (await next_event(bob_events)).event
    assert isinstance(edited, MessageEdited) and edited.dialog_key == key
    assert edited.item.content == "typo here"
    assert edited.item.updated_at is not None

    await bob.hide_message(key, msgkey)  # only Bob's own devices hear of it
    hidden = await next_event(bob_events)
    assert hidden.event == MessageHidden(key, msgkey)

    await alice.delete_message(key, msgkey)
    seen_by_alice = [type(u.event) for u in [await next_event(alice_events), await next_event(alice_events)]]
    assert seen_by_alice == [MessageEdited, MessageDeleted]
    deleted = (await next_event(bob_events)).event
    assert isinstance(deleted, MessageDeleted) and deleted.key == msgkey and deleted.deleted_at is not None


async def test_dialog_lifecycle_events_and_a_kicked_member_hears_no_more(user):
    owner, bob, carol = await user(), await user(), await user()
    bob_events = await bob.events().start()
    carol_events = await carol.events().start()
    key = await owner.create_dialog("club", private=True, members=[bob.user_id])
    created = await next_event(bob_events)
    assert created.event == DialogCreated(key, name="club", photo=None, private=True, owner=owner.user_id)

    await owner.change_dialog(key, name="book club", add_members=[carol.user_id])
    changed = (await next_event(bob_events)).event
    assert isinstance(changed, DialogChanged) and changed.name == "book club"
    added = await next_event(bob_events)
    assert added.event == MembersAdded(key, (carol.user_id,))
    assert isinstance((await next_event(carol_events)).event, DialogChanged)

    await owner.kick(key, bob.user_id)
    kicked = await next_event(bob_events)
    assert kicked.event == MemberKicked(key, removed=bob.user_id, by=owner.user_id)
    await events_until(carol_events, MemberKicked)

    await owner.send_message(key, "after Bob left")
    assert isinstance((await next_event(carol_events)).event, NewMessage)
    with pytest.raises(TimeoutError):
        await next_event(bob_events, timeout=0.5)


async def test_read_receipts_unread_counts_and_read_flags(user):
    alice, bob = await user(), await user()
    key = await alice.create_dialog("receipts", members=[bob.user_id])
    keys = [await alice.send_message(key, f"message {i}") for i in range(3)]
    (bob_view,) = [d for d in await bob.dialogs() if d.key == key]
    assert bob_view.unread == 3
    assert [m.read for m in await alice.messages(key)] == [False, False, False]

    alice_events = await alice.events().start()
    await bob.mark_read(key, keys[1])
    receipt = await next_event(alice_events)
    assert receipt.event == MessagesRead(key, reader=bob.user_id, key=keys[1])
    (bob_view,) = [d for d in await bob.dialogs() if d.key == key]
    assert bob_view.unread == 1
    # Newest first: Alice sees her first two messages read by Bob, Bob sees what he read.
    assert [m.read for m in await alice.messages(key)] == [False, True, True]
    assert [m.read for m in await bob.messages(key)] == [False, True, True]
    # A read mark never moves back.
    await bob.mark_read(key, keys[0])
    (bob_view,) = [d for d in await bob.dialogs() if d.key == key]
    assert bob_view.unread == 1
    with pytest.raises(NotFound, match="message not found"):
        await bob.mark_read(key, "nonexistent-key")


async def test_typing_is_pushed_to_connected_members_but_not_stored(user):
    alice, bob = await user(), await user()
    key = await alice.create_dialog("typing", members=[bob.user_id])
    bob_events = await bob.events().start()
    await alice.typing(key)
    typing = await next_event(bob_events)
    assert typing == Update(None, Typing(key, alice.user_id))
    log = await bob.request("GetEvents", {"after": 0, "take": 100})
    assert "Typing" not in [e["Kind"] for e in log["Events"]]


async def test_important_and_forwarded_messages(user):
    alice, bob, carol = await user(), await user(), await user()
    source = await alice.create_dialog("source", members=[bob.user_id])
    image = await alice.upload_media(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32, "png")
    original = await alice.send_message(source, "look at this", media=[image], important=True)
    assert (await bob.message(source, original)).important is True

    target = await bob.create_dialog("elsewhere", members=[carol.user_id])
    forwarded = await bob.forward_message(target, original)
    seen = await carol.message(target, forwarded)
    assert (seen.content, seen.forwarded_key, seen.media, seen.author_id) == (
        "look at this", original, (image,), bob.user_id
    )
    # Carol may now fetch the forwarded picture; forwarding what you cannot see is 404.
    assert (await carol.get_media(image)).data.startswith(b"\x89PNG")
    with pytest.raises(NotFound, match="forwardedKey"):
        await carol.forward_message(target, original)


def _raw_subscriber(server, token: str, deviceid: str) -> socket.socket:
    """A client that subscribes and then never reads its socket."""
    sock = socket.create_connection((server.host, server.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sessia = {"tocken": token, "device": {"deviceid": deviceid}, "client": TEST_CLIENT}
    sock.sendall(encode_request(1, "Subscribe", {"sessia": sessia}))
    header = sock.recv(HEADER.size, socket.MSG_WAITALL)
    (length,) = struct.unpack(">I", header[10:14])
    sock.recv(length, socket.MSG_WAITALL)
    return sock


async def test_a_reader_that_falls_behind_is_told_to_resync_and_memory_stays_bounded(start_server):
    import client_sdk

    server = start_server(
        "--push-buffer-limit", "20000", "--socket-send-buffer", "32768", "--rate-send-message", "off"
    )
    clients = []
    try:
        for _ in range(2):
            c = await client_sdk.connect(server.host, server.port, device={"deviceid": "dev" + str(len(clients))},
                                         client=TEST_CLIENT)
            login = f"slow{len(clients)}{id(c)}"
            await c.register(login, f"{login}@example.org", "correct horse battery")
            clients.append(c)
        sender, reader = clients
        key = await sender.create_dialog("firehose", members=[reader.user_id])
        sock = await asyncio.to_thread(_raw_subscriber, server, reader.token, reader.device.deviceid)
        text = "x" * 4000
        sent = 150  # ~600 KB of pushes: far more than 32 KiB of socket buffer and 20 KB of limit
        for _ in range(sent):
            await sender.send_message(key, text)
        # The server gave up pushing to that socket instead of buffering 1.6 MB:
        # what the socket can still deliver ends with a Resync frame.
        sock.setblocking(True)
        sock.settimeout(5)
        data = b""
        while True:
            try:
                chunk = sock.recv(1 << 20)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
            if b"\x06Resync" in data:
                break
        sock.close()
        assert b"\x06Resync" in data, [line for line in server.log if "resync" in line.lower()]
        assert data.count(b"NewMessage") < sent  # the rest was left to catch-up
        # The SDK handles the same signal by subscribing again from its last seq:
        stream = await reader.events(after=0).start()
        got = [await next_event(stream) for _ in range(5)]
        assert [e.seq for e in got] == [1, 2, 3, 4, 5]
    finally:
        for c in clients:
            await c.close()


async def test_typing_and_receipts_spend_the_message_budget(start_server):
    import client_sdk
    from client_sdk import TooManyRequests

    server = start_server("--rate-send-message", "3/60")
    c = await client_sdk.connect(server.host, server.port, device={"deviceid": "typist"}, client=TEST_CLIENT)
    try:
        await c.register("typist1", "typist1@example.org", "correct horse battery")
        key = await c.create_dialog("budget")
        msgkey = await c.send_message(key, "one")
        await c.typing(key)
        await c.mark_read(key, msgkey)
        with pytest.raises(TooManyRequests) as refused:
            await c.typing(key)
        assert refused.value.extra["RetryAfter"] > 0
    finally:
        await c.close()
