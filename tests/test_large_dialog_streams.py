"""A dialog past ``--large-dialog-members`` keeps one log of its own: its
members follow it as ``DialogEvent`` pushes numbered by ``Pts``; every member
gets every message once, in order, live and after being away."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from protocol.events import DialogGap, FollowDialog, MembersAdded, NewMessage

pytestmark = pytest.mark.asyncio


async def registered(connect, server, count: int) -> list:
    """``count`` new users on ``server``, each logged in on its own connection."""
    users = []
    for _ in range(count):
        c = await connect(target=server)
        login = f"u{secrets.token_hex(6)}"
        await c.register(login, f"{login}@example.org", "correct horse battery")
        users.append(c)
    return users


async def next_of(stream, kind, timeout: float = 10.0):
    while True:
        update = await asyncio.wait_for(stream.__anext__(), timeout)
        if isinstance(update.event, kind):
            return update


async def test_a_dialog_that_grows_past_the_limit_is_followed_by_pts(start_server, connect):
    server = start_server("--large-dialog-members", "3")
    users = await registered(connect, server, 5)
    alice, bob, carol, dave, erin = users
    streams = [await c.events().start() for c in users]
    dialog = await alice.create_dialog("grows", private=False, members=[bob.user_id, carol.user_id])
    await alice.send_message(dialog, "while small")  # three members: each member's own log
    update = await next_of(streams[1], NewMessage)
    assert update.seq is not None and update.pts is None

    await dave.join(dialog)  # four members: past the limit, the dialog starts its own log
    for stream in streams[:4]:
        follow = await next_of(stream, FollowDialog)
        assert follow.event == FollowDialog(dialog, 0)
    added = await next_of(streams[1], MembersAdded)
    assert (added.seq, added.pts) == (None, 1)

    keys = [await alice.send_message(dialog, f"big {i}") for i in range(3)]
    for stream in streams[:4]:
        got = [await next_of(stream, NewMessage) for _ in keys]
        assert [u.event.item.key for u in got] == keys
        assert [u.pts for u in got] == [2, 3, 4] and {u.seq for u in got} == {None}
    # One row per message in the dialog's log, none in the members' own logs.
    page = await bob.request("GetDialogEvents", {"pkDialog": dialog, "after": 0})
    assert [e["Pts"] for e in page["Events"]] == [1, 2, 3, 4] and page["LastPts"] == 4

    # Erin is not a member: nothing of it reaches her, and its log is not hers to read.
    with pytest.raises(asyncio.TimeoutError):
        await next_of(streams[4], NewMessage, timeout=1)
    refused = await erin.call("GetDialogEvents", {"pkDialog": dialog, "after": 0})
    assert refused["Status"] == {"code": 404, "message": "dialog not found"}


async def test_a_follower_who_was_away_gets_what_it_missed_once(start_server, connect):
    server = start_server("--large-dialog-members", "2")
    users = await registered(connect, server, 3)
    alice, bob, carol = users
    dialog = await alice.create_dialog("big from the start", members=[bob.user_id, carol.user_id])
    stream = await bob.events().start()  # from now: the answer names the dialog's stream and where it starts
    assert stream.dialog_pts == {dialog: 0}
    first = await alice.send_message(dialog, "one")
    assert (await next_of(stream, NewMessage)).event.item.key == first

    # Bob's connection drops; two messages are sent meanwhile; the stream
    # reconnects and subscribes with its position in the dialog's log.
    bob.transport.close()
    missed = [await alice.send_message(dialog, f"missed {i}") for i in range(2)]
    got = [await next_of(stream, NewMessage, timeout=20) for _ in missed]
    assert [u.event.item.key for u in got] == missed
    with pytest.raises(asyncio.TimeoutError):
        await next_of(stream, NewMessage, timeout=1)


async def large_dialog_across_nodes(node_a, node_b, connect) -> None:
    """Members on node B follow a large dialog whose messages are sent on
    node A; one of them is killed away meanwhile and catches up by pts."""
    (alice,) = await registered(connect, node_a, 1)
    bob, carol = await registered(connect, node_b, 2)
    dialog = await alice.create_dialog("across", members=[bob.user_id, carol.user_id])
    streams = [await c.events().start() for c in (bob, carol)]
    for stream in streams:
        assert stream.dialog_pts == {dialog: 0}
    keys = [await alice.send_message(dialog, f"across {i}") for i in range(3)]
    for stream in streams:
        got = [await next_of(stream, NewMessage) for _ in keys]
        assert [(u.event.item.key, u.pts) for u in got] == list(zip(keys, [1, 2, 3], strict=True))

    node_b.kill()  # kill -9 of the node both listen on
    more = [await alice.send_message(dialog, f"while B is down {i}") for i in range(2)]
    node_b.start()  # same port: the SDK reconnects and subscribes with its positions
    for stream in streams:
        got = [await next_of(stream, NewMessage, timeout=30) for _ in more]
        assert [(u.event.item.key, u.pts) for u in got] == list(zip(more, [4, 5], strict=True))
        with pytest.raises(asyncio.TimeoutError):
            await next_of(stream, NewMessage, timeout=1)


async def test_a_large_dialog_across_nodes_and_a_kill(start_server, new_database, connect):
    url = new_database()
    node_a = start_server("--large-dialog-members", "2", database_url=url)
    node_b = start_server("--large-dialog-members", "2", database_url=url)
    await large_dialog_across_nodes(node_a, node_b, connect)


@pytest.fixture(scope="module")
def nats_url():
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from .support import free_port

    binary = shutil.which("nats-server") or str(Path(sys.executable).parent / "nats-server")
    port = free_port()
    proc = subprocess.Popen([binary, "-a", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield f"nats://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


async def test_a_large_dialog_across_nodes_over_nats(start_server, new_database, connect, nats_url):
    url = new_database()
    node_a = start_server("--large-dialog-members", "2", "--broker", nats_url, database_url=url)
    node_b = start_server("--large-dialog-members", "2", "--broker", nats_url, database_url=url)
    await large_dialog_across_nodes(node_a, node_b, connect)


async def test_growing_past_the_limit_while_messages_flow_loses_and_repeats_nothing(start_server, connect):
    server = start_server("--large-dialog-members", "3")
    users = await registered(connect, server, 4)
    alice, bob, carol, dave = users
    dialog = await alice.create_dialog("growing", private=False, members=[bob.user_id, carol.user_id])
    stream = await carol.events().start()

    async def send(sender, tag: str) -> list[str]:
        return [await sender.send_message(dialog, f"{tag} {i}") for i in range(15)]

    async def join_midway() -> None:
        await asyncio.sleep(0.05)
        await dave.join(dialog)  # the dialog grows past the limit while both send

    sent_a, sent_b, _ = await asyncio.gather(send(alice, "a"), send(bob, "b"), join_midway())
    seen: list[str] = []
    while len(seen) < len(sent_a) + len(sent_b):
        update = await next_of(stream, NewMessage, timeout=20)
        seen.append(update.event.item.key)
    assert sorted(seen) == sorted(sent_a + sent_b)  # every message, once
    assert [k for k in seen if k in set(sent_a)] == sent_a  # each sender's in the order sent
    assert [k for k in seen if k in set(sent_b)] == sent_b
    with pytest.raises(asyncio.TimeoutError):
        await next_of(stream, NewMessage, timeout=1)


async def test_a_late_joiner_reads_history_and_follows_from_where_it_joined(start_server, connect):
    server = start_server("--large-dialog-members", "2")
    users = await registered(connect, server, 4)
    alice, bob, carol, late = users
    dialog = await alice.create_dialog("big", private=False, members=[bob.user_id, carol.user_id])
    before = [await alice.send_message(dialog, f"before {i}") for i in range(3)]
    stream = await late.events().start()
    await late.join(dialog)
    follow = await next_of(stream, FollowDialog)
    assert follow.event.pts == 3  # the stream starts after the messages sent before the join
    after = await alice.send_message(dialog, "after the join")
    got = await next_of(stream, NewMessage)
    assert got.event.item.key == after and got.pts == 5  # 4 was the join itself (MembersAdded)
    # History is there to read, as for any member.
    assert [m.key for m in await late.messages(dialog)] == [after, *reversed(before)]
    # GetDialogs counts unread for the new member from the start, exactly.
    (item,) = [d for d in await late.dialogs() if d.key == dialog]
    assert item.unread == 4


async def test_a_follower_behind_the_trimmed_log_is_told_of_the_gap(start_server, connect):
    server = start_server(
        "--large-dialog-members", "2", "--event-keep-per-dialog", "2", "--event-trim-interval", "0.2"
    )
    alice, bob, carol = await registered(connect, server, 3)
    dialog = await alice.create_dialog("trimmed", private=False, members=[bob.user_id, carol.user_id])
    keys = [await alice.send_message(dialog, f"m{i}") for i in range(5)]  # pts 1..5
    # The trim keeps the newest two events: a reader from pts 0 is told they
    # are gone (a pass that ran while the messages were sent trimmed less).
    gone = {
        "code": 410,
        "message": "events of this dialog up to 3 are no longer kept: reload its messages and continue from 5",
    }
    for _ in range(300):
        answer = await bob.call("GetDialogEvents", {"pkDialog": dialog, "after": 0})
        if answer["Status"] == gone:
            break
        assert answer["Status"]["code"] in (200, 410)
        await asyncio.sleep(0.1)
    assert answer["Status"] == gone
    assert answer["LastPts"] == 5
    kept = await bob.request("GetDialogEvents", {"pkDialog": dialog, "after": 3})
    assert [e["Pts"] for e in kept["Events"]] == [4, 5]
    assert [e["Msg"]["infoMessage"]["msgKey"] for e in kept["Events"]] == keys[3:]

    # A stream that was at pts 0 gets one DialogGap, then what comes next.
    stream = await bob.events(dialogs={dialog: 0}).start()
    gap = await next_of(stream, DialogGap)
    assert gap.event == DialogGap(dialog, 5) and gap.pts == 5
    assert stream.dialog_pts[dialog] == 5
    after = await alice.send_message(dialog, "after the gap")
    update = await next_of(stream, NewMessage)
    assert (update.event.item.key, update.pts) == (after, 6)
    # A member who joins after the trim reads from where they joined: no gap.
    dave = (await registered(connect, server, 1))[0]
    await dave.join(dialog)
    fresh = await dave.request("GetDialogEvents", {"pkDialog": dialog, "after": 0})
    assert fresh["Status"]["code"] == 200 and fresh["LastPts"] == 7
