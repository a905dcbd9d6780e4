"""Push events, catch-up, resync, and several server nodes on one PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

import client_sdk
from client_sdk import Gone
from protocol.events import FriendAccepted, FriendRequest, MessageEdited, NewMessage, parse_event
from server.push import DIALOG_SIGNAL_MIN

from .conftest import unique
from .support import TEST_CLIENT, free_port


async def next_event(stream, timeout: float = 10.0):
    return await asyncio.wait_for(stream.__anext__(), timeout)


async def register_on(server, **kw) -> client_sdk.Client:
    c = await client_sdk.connect(
        server.host, server.port, device={"deviceid": secrets.token_hex(8)}, client=TEST_CLIENT, **kw
    )
    login = unique()
    await c.register(login, f"{login}@example.org", "correct horse battery")
    return c


async def test_friend_request_and_acceptance_are_pushed(user):
    alice, bob = await user(), await user()
    bob_events = await bob.events().start()
    alice_events = await alice.events().start()
    await alice.send_friend_request(bob.user_id, "met at the conference")
    event = await next_event(bob_events)
    assert event.event == FriendRequest(from_id=alice.user_id, to_id=bob.user_id)
    assert event.seq is not None and event.seq >= 1
    # Alice's own devices learn of the request she sent...
    sent = await next_event(alice_events)
    assert sent.event == FriendRequest(from_id=alice.user_id, to_id=bob.user_id)
    await bob.accept_friend(alice.user_id)
    accepted = await next_event(alice_events)
    assert accepted.event == FriendAccepted(from_id=bob.user_id, to_id=alice.user_id)
    # Bob's own stream sees his acceptance too (his other devices must learn it).
    mine = await next_event(bob_events)
    assert (type(mine.event), mine.seq) == (FriendAccepted, event.seq + 1)


async def test_every_device_of_the_user_receives_the_event(user, connect):
    alice, bob = await user(), await user()
    bob_phone = await connect()
    await bob_phone.login(bob.email, bob.password)
    streams = [bob.events(after=0), bob_phone.events(after=0)]
    await alice.send_friend_request(bob.user_id)
    for stream in streams:
        event = await next_event(stream)
        assert isinstance(event.event, FriendRequest) and event.event.from_id == alice.user_id


async def test_catch_up_after_being_offline_is_exact_and_in_order(user, connect):
    bob = await user()
    senders = [await user() for _ in range(3)]
    for sender in senders:
        await sender.send_friend_request(bob.user_id)
    # Bob was never subscribed: a fresh connection replays everything from seq 0.
    later = await connect()
    await later.login(bob.email, bob.password)
    stream = later.events(after=0)
    seen = [await next_event(stream) for _ in senders]
    assert [e.event for e in seen] == [FriendRequest(s.user_id, bob.user_id) for s in senders]
    assert [e.seq for e in seen] == [1, 2, 3]
    # Resuming from seq 2 replays only seq 3.
    again = await connect()
    await again.login(bob.email, bob.password)
    resumed = await next_event(again.events(after=2))
    assert (resumed.seq, resumed.event) == (3, FriendRequest(senders[2].user_id, bob.user_id))


async def test_get_events_pages_the_log(user):
    bob = await user()
    senders = [await user() for _ in range(3)]
    for sender in senders:
        await sender.send_friend_request(bob.user_id)
    page = await bob.request("GetEvents", {"after": 0, "take": 2})
    assert [e["Seq"] for e in page["Events"]] == [1, 2]
    assert page["LastSeq"] == 3 and page["More"] is True
    rest = await bob.request("GetEvents", {"after": 2, "take": 2})
    assert [e["Seq"] for e in rest["Events"]] == [3] and rest["More"] is False
    bad = await bob.call("GetEvents", {"after": -1})
    assert bad["Status"] == {"code": 422, "message": "after: must be at least 0"}


async def test_trimmed_log_answers_gone_with_the_position_to_resume_from(start_server):
    server = start_server("--event-keep-per-user", "1", "--event-trim-interval", "0.2")
    bob = await register_on(server)
    senders = [await register_on(server) for _ in range(3)]
    try:
        for sender in senders:
            await sender.send_friend_request(bob.user_id)
        await asyncio.sleep(1.0)  # a trim pass keeps only the newest event
        with pytest.raises(Gone, match="no longer kept") as gone:
            await bob.request("Subscribe", {"after": 0})
        assert gone.value.extra["LastSeq"] == 3
        answer = await bob.request("GetEvents", {"after": 2})
        assert [e["Seq"] for e in answer["Events"]] == [3]
    finally:
        for c in (bob, *senders):
            await c.close()


async def test_events_cross_nodes_and_survive_a_kill_of_the_node(start_server, new_database):
    url = new_database()
    node_a = start_server(database_url=url)
    node_b = start_server(database_url=url)
    alice = await register_on(node_a)
    bob = await register_on(node_b)
    try:
        stream = bob.events(after=0)
        await alice.send_friend_request(bob.user_id)
        first = await next_event(stream)
        assert first.event == FriendRequest(alice.user_id, bob.user_id)

        # kill -9 node B while Bob is connected to it; events keep happening on A.
        node_b.kill()
        others = [await register_on(node_a) for _ in range(3)]
        for other in others:
            await other.send_friend_request(bob.user_id)
        node_b.start()  # same data dir, same port: the SDK reconnects by itself
        got = [await next_event(stream, timeout=30) for _ in others]
        assert [e.event for e in got] == [FriendRequest(o.user_id, bob.user_id) for o in others]
        assert [e.seq for e in got] == [2, 3, 4]
        # ...and exactly once: nothing else is pending.
        with pytest.raises(TimeoutError):
            await next_event(stream, timeout=1)
    finally:
        for c in (alice, bob):
            await c.close()


async def test_logout_on_one_node_is_seen_at_once_by_the_other(start_server, new_database):
    url = new_database()
    node_a = start_server(database_url=url)
    node_b = start_server(database_url=url)
    carol = await register_on(node_a)
    try:
        on_b = await client_sdk.connect(node_b.host, node_b.port, device=carol.device, client=TEST_CLIENT)
        await on_b.login_with_token(carol.token)  # node B now has the session cached
        await carol.logout()
        await asyncio.sleep(0.3)
        answer = await on_b.call("Auth", {})
        assert answer["Status"] == {"code": 401, "message": "invalid or revoked token"}
        await on_b.close()
    finally:
        await carol.close()


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory):
    binary = shutil.which("nats-server") or str(Path(sys.executable).parent / "nats-server")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "-a", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    yield f"nats://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


async def test_events_cross_nodes_over_nats(start_server, new_database, nats_url):
    url = new_database()
    node_a = start_server("--broker", nats_url, database_url=url)
    node_b = start_server("--broker", nats_url, database_url=url)
    alice = await register_on(node_a)
    bob = await register_on(node_b)
    try:
        stream = bob.events(after=0)
        for _ in range(3):
            other = await register_on(node_a)
            await other.send_friend_request(bob.user_id)
            await other.close()
        got = [await next_event(stream) for _ in range(3)]
        assert [e.seq for e in got] == [1, 2, 3]
        # Revocation crosses over NATS too.
        on_b = await client_sdk.connect(node_b.host, node_b.port, device=alice.device, client=TEST_CLIENT)
        await on_b.login_with_token(alice.token)
        await alice.logout()
        await asyncio.sleep(0.3)
        assert (await on_b.call("Auth", {}))["Status"]["code"] == 401
        await on_b.close()
    finally:
        await alice.close()
        await bob.close()


async def test_a_users_events_go_with_the_account(user, server):
    """The event log has no per-row foreign key (migration 0011): deleting an
    account still removes its events, through its counter row."""
    alice, bob = await user(), await user()
    dialog = await alice.create_dialog("gone", members=[bob.user_id])
    await alice.send_message(dialog, "before bob goes")
    conn = await asyncpg.connect(server.args[server.args.index("--database-url") + 1])
    try:
        count = "SELECT count(*) FROM events WHERE user_id = $1"
        assert await conn.fetchval(count, bob.user_id) >= 2  # DialogCreated, NewMessage
        await conn.execute("DELETE FROM users WHERE id = $1", bob.user_id)
        assert await conn.fetchval(count, bob.user_id) == 0
        assert await conn.fetchval(count, alice.user_id) >= 2
    finally:
        await conn.close()


async def test_pushes_and_history_agree_on_order_when_two_nodes_send_into_one_dialog(start_server, new_database):
    """Messages sent at the same moment through two nodes: every member is
    pushed them in the order of the dialog's history (message ids), so a
    client that appends pushes and later reloads the history, or marks read
    up to the last message it was pushed, sees the same order."""
    url = new_database()
    node_a = start_server(database_url=url)
    node_b = start_server(database_url=url)
    reader = await register_on(node_a)
    senders = [await register_on(node) for node in (node_a, node_b, node_a, node_b)]
    try:
        dialog = await senders[0].create_dialog("race", members=[reader.user_id] + [s.user_id for s in senders[1:]])
        stream = await reader.events().start()

        async def send(c: client_sdk.Client, lane: int) -> None:
            for n in range(15):
                await c.send_message(dialog, f"{c.user_id}.{lane}.{n}")

        await asyncio.gather(*(send(c, lane) for c in senders for lane in range(4)))
        pushed = []
        while len(pushed) < 4 * 4 * 15:
            event = (await next_event(stream)).event
            if isinstance(event, NewMessage):
                pushed.append(event.item.key)
        history = []
        for skip in range(0, len(pushed), 100):
            history += [m.key for m in await reader.messages(dialog, take=100, skip=skip)]
        assert pushed == history[::-1]
    finally:
        for c in (reader, *senders):
            await c.close()


async def events_after(client: client_sdk.Client, after: int) -> list:
    page = await client.request("GetEvents", {"after": after})
    return [parse_event(e["Kind"], {k: v for k, v in e.items() if k not in ("Seq", "Kind")}) for e in page["Events"]]


async def test_the_log_keeps_no_copy_of_a_message_and_shows_it_as_it_is_now(user, server):
    """A message's events name it rather than copy it: no member's log row
    holds its text, and a member who was away reads it as it is now (edited,
    its media, then deleted), in the shape a live push has."""
    alice, bob, carol = await user(), await user(), await user()
    dialog = await alice.create_dialog("refs", members=[bob.user_id, carol.user_id])
    photo = await alice.upload_media(b"\x89PNG\r\n\x1a\n" + b"x" * 32, "png")
    start = (await carol.request("GetEvents", {"after": 0}))["LastSeq"]
    key = await alice.send_message(dialog, "first words", media=[photo])
    await alice.edit_message(dialog, key, "second words")
    conn = await asyncpg.connect(server.args[server.args.index("--database-url") + 1])
    try:
        rows = await conn.fetch(
            "SELECT e.user_id, e.kind, e.payload FROM events e JOIN messages m"
            " ON m.dialog_id = e.dialog_id AND m.id = e.message_id WHERE m.key = $1 ORDER BY e.user_id, e.seq", key
        )
    finally:
        await conn.close()
    assert {(r["user_id"], r["kind"]) for r in rows} == {
        (u, k) for u in (alice.user_id, bob.user_id, carol.user_id) for k in ("NewMessage", "MessageEdited")
    }
    assert all(r["payload"] is None for r in rows)

    shown = [e for e in await events_after(carol, start) if isinstance(e, (NewMessage, MessageEdited))]
    assert [type(e) for e in shown] == [NewMessage, MessageEdited]
    for event in shown:
        assert (event.item.key, event.item.content, event.item.media) == (key, "second words", (photo,))
        assert event.item.updated_at is not None
    assert shown[0].item.read is False and shown[1].item.read is False  # as the live pushes had them

    await alice.delete_message(dialog, key)
    gone = [e.item for e in await events_after(carol, start) if isinstance(e, NewMessage)]
    assert [(m.content, m.media, m.deleted_at is not None) for m in gone] == [("", (), True)]


async def large_dialog_crosses_nodes(node_a, node_b, size: int) -> None:
    """``size`` members registered on node A but two, who listen on node B; a
    message sent on A reaches both, in order, exactly once."""
    sender = await register_on(node_a)
    others = [await register_on(node_a) for _ in range(size - 3)]
    listeners = [await register_on(node_b) for _ in range(2)]
    try:
        dialog = await sender.create_dialog("big", members=[c.user_id for c in [*others, *listeners]])
        streams = [c.events() for c in listeners]
        for stream in streams:
            await stream.start()
        keys = [await sender.send_message(dialog, f"to everyone {i}") for i in range(3)]
        for stream in streams:
            got = []
            while len(got) < 3:
                update = await next_event(stream)
                if isinstance(update.event, NewMessage):
                    got.append(update.event.item.key)
            assert got == keys
            with pytest.raises(TimeoutError):
                await next_event(stream, timeout=1)
    finally:
        for c in (sender, *others, *listeners):
            await c.close()


async def test_a_large_dialog_is_one_signal_and_reaches_the_members_on_the_other_node(start_server, new_database):
    url = new_database()
    node_a, node_b = start_server(database_url=url), start_server(database_url=url)
    await large_dialog_crosses_nodes(node_a, node_b, DIALOG_SIGNAL_MIN + 4)


async def test_a_large_dialog_crosses_nodes_over_nats(start_server, new_database, nats_url):
    url = new_database()
    node_a = start_server("--broker", nats_url, database_url=url)
    node_b = start_server("--broker", nats_url, database_url=url)
    await large_dialog_crosses_nodes(node_a, node_b, DIALOG_SIGNAL_MIN + 4)


def test_a_delivery_to_many_members_of_a_dialog_is_signalled_as_the_dialog() -> None:
    from datetime import UTC, datetime

    from server.push import signals_of
    from storage.event_log import EventRow

    now = datetime.now(UTC)
    big = [EventRow(u, 7, "NewMessage", {}, now, None, "k", 42) for u in range(1, DIALOG_SIGNAL_MIN + 1)]
    small = [EventRow(u, 3, "NewMessage", {}, now, None, "s", 9) for u in (100, 101)]
    friends = [EventRow(200, 5, "FriendRequest", {}, now)]
    assert signals_of(big + small + friends) == ["d42", "100:3", "101:3", "200:5"]


def test_the_member_removed_from_a_large_dialog_is_signalled_by_user() -> None:
    """The other nodes look up who is a member: the removed member no longer
    is, so their own event goes by user (else their other devices wait)."""
    from datetime import UTC, datetime

    from server.push import signals_of
    from storage.event_log import EventRow

    now = datetime.now(UTC)
    kicked = {"PkDialog": "k", "Id": 99, "By": 1}
    rows = [EventRow(u, 5, "MemberKicked", kicked, now, None, "k", 42) for u in range(1, DIALOG_SIGNAL_MIN + 1)]
    rows.append(EventRow(99, 8, "MemberKicked", kicked, now, None, "k", 42))
    assert signals_of(rows) == ["d42", "99:8"]
