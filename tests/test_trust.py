"""Rules that must hold when a second request arrives in the middle of the first.

Each test races the change that takes a right away (a kick, a leave, a
password change, a logout) against requests that use that right, and then
checks what a user would see: the final members, the order of the events in
the log, whether an old token still works, whether pushes still arrive.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import Callable
from typing import Any

import pytest

import client_sdk
from protocol.events import MemberKicked, NewMessage

from .support import TEST_CLIENT, code_from

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
PASSWORD = "correct horse battery"
_names = itertools.count(1)


@pytest.fixture(autouse=True)
def no_tracebacks(server):
    """Whatever races, the server answers deliberately: no 500, no traceback."""
    start = len(server.log)
    yield
    new = server.log[start:]
    assert not [line for line in new if "Traceback" in line or "unhandled error" in line], "\n".join(new[-60:])


async def same_session(connect, owner: client_sdk.Client) -> client_sdk.Client:
    """Another connection of ``owner``'s session (same token, same device)."""
    c = await connect(device=owner.device.deviceid)
    await c.login_with_token(owner.token)  # type: ignore[arg-type]
    return c


async def events_of(c: client_sdk.Client) -> list[dict[str, Any]]:
    """The caller's whole event log, as GetEvents pages it."""
    out: list[dict[str, Any]] = []
    after = 0
    while True:
        page = await c.request("GetEvents", {"after": after, "take": 1000})
        out += page["Events"]
        if not page["More"]:
            return out
        after = page["Through"]


async def hammer(clients: list[client_sdk.Client], make_body: Callable[[], tuple[str, dict[str, Any]]],
                 stop: asyncio.Event, refusals_to_stop: int = 3) -> list[int]:
    """Send requests from every client, several in flight each, until ``stop``
    is set and each loop has been refused a few times; returns the codes."""
    codes: list[int] = []

    async def loop(c: client_sdk.Client) -> None:
        refused_after_stop = 0
        for _ in range(2000):
            name, body = make_body()
            answer = await c.call(name, body)
            code = answer["Status"]["code"]
            codes.append(code)
            if stop.is_set() and code != 200:
                refused_after_stop += 1
                if refused_after_stop >= refusals_to_stop:
                    return
            await asyncio.sleep(0)

    await asyncio.gather(*(loop(c) for c in clients for _ in range(3)))
    return codes


# -- 1. the right is decided inside the change ----------------------------------------------


#: (label, who loses the right: "kick" (Alice kicks admin Bob) or "leave" (owner Alice leaves),
#:  the request the loser keeps sending, built from (dialog, scene)).
RACES: list[tuple[str, str, Callable[[str, dict[str, Any]], dict[str, Any]]]] = [
    ("adds himself back", "kick", lambda d, s: {"dialog": {"pkDialog": d, "IdUsers": [s["bob"]]}}),
    ("renames", "kick", lambda d, s: {"dialog": {"pkDialog": d, "name": f"bob-{next(_names)}"}}),
    ("adds a member", "kick", lambda d, s: {"dialog": {"pkDialog": d, "IdUsers": [s["dave"]]}}),
    ("changes the photo", "kick", lambda d, s: {"dialog": {"pkDialog": d, "photo": s["photo"]}}),
    ("deletes for everyone", "kick", lambda d, s: {"operation": "delete", "message": {
        "infoMessage": {"pkDialog": d, "msgkey": s["messages"].pop() if s["messages"] else "gone"}}}),
    ("appoints admins", "leave", lambda d, s: {"dialog": {"pkDialog": d, "admins": [s["carol"]]}}),
]


@pytest.mark.parametrize("label,removal,body", RACES, ids=[r[0].replace(" ", "-") for r in RACES])
async def test_a_manager_removed_mid_request_is_refused_never_half_obeyed(user, connect, label, removal, body):
    """Owner Alice, admin Bob, member Carol in a private dialog.  The one who
    loses the right (Bob kicked, or Alice leaving) keeps sending a
    manager-only request on three connections.  Once the removal has
    committed, none of them may take effect: in the log of a member who
    stays, nothing that request causes comes after the removal, and the one
    removed is not a member."""
    for _trial in range(3):
        alice, bob, carol, dave = [await user() for _ in range(4)]
        key = await alice.create_dialog("race", private=True, members=[bob.user_id, carol.user_id])
        await alice.change_dialog(key, admins=[bob.user_id])
        loser, remover = (bob, alice) if removal == "kick" else (alice, alice)
        photo = await loser.upload_media(PNG + bytes([_trial]), "png")
        messages = [await alice.send_message(key, f"m{i}") for i in range(40)] if "deletes" in label else []
        scene = {"bob": bob.user_id, "carol": carol.user_id, "dave": dave.user_id, "photo": photo,
                 "messages": messages}
        conns = [loser, await same_session(connect, loser), await same_session(connect, loser)]
        remover_conn = await same_session(connect, remover) if removal == "leave" else remover
        witness = carol

        stop = asyncio.Event()

        async def remove(c: client_sdk.Client, key: str, bob_id: int, stop: asyncio.Event) -> None:
            await asyncio.sleep(0.05)
            if removal == "kick":
                await c.kick(key, bob_id)
            else:
                await c.leave(key)
            stop.set()

        name = "SendMessage" if "deletes" in label else "ChangeDialog"
        codes, _ = await asyncio.gather(
            hammer(conns, functools.partial(lambda n, k, sc: (n, body(k, sc)), name, key, scene), stop),
            remove(remover_conn, key, bob.user_id, stop),
        )
        assert 200 in codes, f"{label}: the race never let a request through before the removal"
        assert 500 not in codes
        gone = loser.user_id
        assert gone not in await witness.dialog_members(key), f"{label}: removed, yet a member again"
        log = [e for e in await events_of(witness) if e.get("PkDialog") == key]
        removed_at = next(i for i, e in enumerate(log) if e["Kind"] == "MemberKicked" and e["Id"] == gone)
        after = [e["Kind"] for e in log[removed_at + 1:]]
        assert after == [], f"{label}: {after} committed after the removal"


# -- 1b. a cache of authorization never brings back what was revoked ------------------------


async def test_a_token_revoked_by_a_password_change_never_comes_back(user, connect):
    """While ChangeUser (new password) commits, requests with the token of
    another session of the same user arrive on fresh connections.  After the
    answer, that token is refused, now and later, on any connection."""
    alice = await user()
    password = PASSWORD
    for trial in range(4):
        other = await connect()
        await other.login(alice.email, password)  # type: ignore[attr-defined]
        token, device = other.token, other.device.deviceid
        await other.close()
        stop = asyncio.Event()

        async def knock(token: str | None, device: str, stop: asyncio.Event) -> None:
            for _ in range(200):
                if stop.is_set():
                    return
                c = await connect(device=device)
                try:
                    await c.call("Auth", {"sessia": {"tocken": token, "device": {"deviceid": device},
                                                     "client": TEST_CLIENT}})
                finally:
                    await c.close()

        async def change(old: str, new: str, stop: asyncio.Event) -> None:
            await asyncio.sleep(0.02)
            await alice.change_user(old_password=old, new_password=new)
            await asyncio.sleep(0.05)  # let the requests that raced it finish
            stop.set()

        new = f"{PASSWORD} {trial}"
        await asyncio.gather(change(password, new, stop), *(knock(token, device, stop) for _ in range(12)))
        password = new
        for _ in range(3):
            late = await connect(device=device)
            answer = await late.call("Auth", {"sessia": {"tocken": token, "device": {"deviceid": device},
                                                         "client": TEST_CLIENT}})
            assert answer["Status"]["code"] == 401, f"trial {trial}: the revoked token came back: {answer}"
            await late.close()


# -- 2. a revoked session keeps no pushes ----------------------------------------------------


async def no_push(c: client_sdk.Client, seconds: float = 0.7) -> None:
    try:
        push = await asyncio.wait_for(c.next_push(), seconds)
    except TimeoutError:
        return
    raise AssertionError(f"a push reached a revoked session: {push}")


async def test_logout_ends_the_subscription_of_the_connection_that_asked(user):
    alice, bob = await user(), await user()
    key = await bob.create_dialog("hi", members=[alice.user_id])
    await alice.request("Subscribe", {})
    await bob.send_message(key, "before")
    push = await asyncio.wait_for(alice.next_push(), 5)
    assert push.body["Kind"] == "NewMessage"
    await alice.logout()  # disable, on the subscribed connection, which stays open for the answer
    await bob.send_message(key, "after the logout: for nobody on that connection")
    await no_push(alice)


async def test_a_password_reset_ends_the_subscription_of_the_connection_that_asked(user, smtp):
    alice, bob = await user(), await user()
    before = smtp.count()
    await alice.request_email_code(alice.email)  # type: ignore[attr-defined]
    await alice.confirm_email(code_from(await smtp.wait_for(alice.email, after=before)))  # type: ignore[attr-defined]
    key = await bob.create_dialog("hi", members=[alice.user_id])
    await alice.request("Subscribe", {})
    before = smtp.count()
    await alice.request_password_reset(alice.email)  # type: ignore[attr-defined]
    code = code_from(await smtp.wait_for(alice.email, after=before))  # type: ignore[attr-defined]
    await alice.reset_password(alice.email, code, "a brand new password")  # type: ignore[attr-defined]
    await bob.send_message(key, "after the reset: for nobody logged in with the old password")
    await no_push(alice)


async def test_a_subscribe_racing_the_logout_of_its_session_does_not_outlive_it(user, connect):
    """Subscribe and disable pipelined on one connection: whichever runs
    first, no subscription of the revoked session is left."""
    alice, bob = await user(), await user()
    key = await bob.create_dialog("hi", members=[alice.user_id])
    for _ in range(5):
        c = await connect()
        await c.login(alice.email, PASSWORD)  # type: ignore[attr-defined]
        await asyncio.gather(c.call("Subscribe", {}), c.call("disable", {}), return_exceptions=True)
        await bob.send_message(key, "for nobody on that connection")
        await no_push(c, 0.3)


# -- 3. the log keeps the dialog's rules ------------------------------------------------------


def texts(events: list[dict[str, Any]], key: str) -> list[str]:
    return [e["Msg"]["infoMessage"]["content"] for e in events if e.get("PkDialog") == key and "Msg" in e]


async def test_a_removed_member_reads_nothing_of_the_dialog_in_the_log(user, connect):
    alice, bob = await user(), await user()
    key = await alice.create_dialog("plans", members=[bob.user_id])
    await alice.send_message(key, "the secret plan")
    await alice.change_dialog(key, name="renamed")
    await alice.kick(key, bob.user_id)
    await alice.send_message(key, "after bob left")
    log = await events_of(bob)
    mine = [(e["Kind"], e.get("Id")) for e in log if e.get("PkDialog") == key]
    assert mine == [("MemberKicked", bob.user_id)], mine  # his own removal, and nothing else
    assert "secret" not in str(log)
    # A subscription from the start replays the same.
    fresh = await same_session(connect, bob)
    stream = await fresh.events(after=0).start()
    first = await asyncio.wait_for(stream.__anext__(), 5)
    assert isinstance(first.event, MemberKicked) and first.event.dialog_key == key
    await no_push(fresh, 0.5)
    # Whoever leaves on their own loses it the same way.
    carol = await user()
    other = await alice.create_dialog("other", members=[carol.user_id])
    await alice.send_message(other, "carol may read this while she stays")
    assert texts(await events_of(carol), other) == ["carol may read this while she stays"]
    await carol.leave(other)
    assert texts(await events_of(carol), other) == []


async def test_a_message_deleted_for_everyone_leaves_no_text_in_any_log(user, connect):
    alice, bob = await user(), await user()
    key = await alice.create_dialog("oops", members=[bob.user_id])
    photo = await alice.upload_media(PNG, "png")
    msgkey = await alice.send_message(key, "my card number is 1234", media=[photo])
    keep = await alice.send_message(key, "this one stays")
    await alice.delete_message(key, msgkey)
    for c in (alice, bob):
        log = await events_of(c)
        assert "1234" not in str(log)
        [new] = [e for e in log if e["Kind"] == "NewMessage" and e["Msg"]["infoMessage"]["msgKey"] == msgkey]
        assert new["Msg"]["infoMessage"]["content"] == ""
        assert new["Msg"]["infoMessage"]["deleteAt"] != ""
        assert new["Msg"]["hash"] is None
        assert texts(log, key) == ["", "this one stays"]
    # ...and not in a replay to a new subscription either.
    fresh = await same_session(connect, bob)
    stream = await fresh.events(after=0).start()
    replayed = [await asyncio.wait_for(stream.__anext__(), 5) for _ in range(4)]
    assert "1234" not in str([e.event for e in replayed])
    assert keep in str([e.event for e in replayed])


async def test_an_edited_message_shows_only_its_latest_text_in_the_log(user):
    alice, bob = await user(), await user()
    key = await alice.create_dialog("typo", members=[bob.user_id])
    msgkey = await alice.send_message(key, "first draft")
    await alice.edit_message(key, msgkey, "second draft")
    await alice.edit_message(key, msgkey, "final text")
    log = await events_of(bob)
    assert "draft" not in str(log)
    assert texts(log, key) == ["final text", "final text", "final text"]
    edited = [e for e in log if e["Kind"] == "MessageEdited"]
    assert all(e["Msg"]["infoMessage"]["updateAt"] != "" for e in edited)


async def test_a_message_racing_the_kick_never_reaches_the_kicked(user, connect):
    """Messages sent while a member is kicked: whatever commits after the
    kick never reaches the kicked member, neither live nor from the log."""
    for _trial in range(3):
        alice, bob = await user(), await user()
        senders = [alice, *[await user() for _ in range(3)]]
        key = await alice.create_dialog("busy", members=[bob.user_id, *[c.user_id for c in senders[1:]]])
        bob_live = await same_session(connect, bob)
        stream = await bob_live.events().start()
        stop = asyncio.Event()

        async def send(c: client_sdk.Client, key: str, stop: asyncio.Event) -> None:
            for i in range(300):
                if stop.is_set():
                    return
                body = {"operation": "add", "message": {"infoMessage": {"pkDialog": key, "content": f"m{i}"}}}
                if (await c.call("SendMessage", body))["Status"]["code"] == 429:
                    await asyncio.sleep(0.05)  # the account's send budget: wait a little

        async def kick(alice: client_sdk.Client, key: str, bob_id: int, stop: asyncio.Event) -> None:
            await asyncio.sleep(0.05)
            await alice.kick(key, bob_id)
            await asyncio.sleep(0.1)
            stop.set()

        await asyncio.gather(kick(alice, key, bob.user_id, stop), *(send(c, key, stop) for c in senders))
        seen: list[type] = []
        while True:
            try:
                update = await asyncio.wait_for(stream.__anext__(), 1.0)
            except TimeoutError:
                break
            seen.append(type(update.event))
        assert MemberKicked in seen
        assert NewMessage not in seen[seen.index(MemberKicked):], seen[seen.index(MemberKicked):]
        log = [e["Kind"] for e in await events_of(bob)]
        assert "NewMessage" not in log  # removed: none of the dialog's messages stay readable




async def test_a_long_run_of_events_one_may_no_longer_see_costs_a_bounded_read(start_server):
    """A member removed from a busy dialog has a long run of events hidden
    from them.  A GetEvents of one event reads at most ten scan pages (1000
    rows) and says where it got to: the client goes on from ``Through``."""
    server = start_server("--rate-send-message", "0")
    alice = await client_sdk.connect(server.host, server.port, device={"deviceid": "busy-a"}, client=TEST_CLIENT)
    bob = await client_sdk.connect(server.host, server.port, device={"deviceid": "busy-b"}, client=TEST_CLIENT)
    try:
        await alice.register("busya", "busya@example.org", PASSWORD)
        await bob.register("busyb", "busyb@example.org", PASSWORD)
        key = await alice.create_dialog("busy", members=[bob.user_id])  # type: ignore[list-item]
        for chunk in range(15):
            await asyncio.gather(*(alice.send_message(key, f"{chunk}-{i}") for i in range(100)))
        await alice.kick(key, bob.user_id)  # type: ignore[arg-type]
        first = await bob.request("GetEvents", {"after": 0, "take": 1})
        assert first["Events"] == [] and first["More"] is True
        assert first["Through"] == 1000  # ten reads of 100 rows, then an answer
        rest = await bob.request("GetEvents", {"after": first["Through"], "take": 1})
        assert [(e["Kind"], e["Id"]) for e in rest["Events"]] == [("MemberKicked", bob.user_id)]
        assert rest["Through"] == rest["LastSeq"] == rest["Events"][0]["Seq"] and rest["More"] is False
    finally:
        await alice.close()
        await bob.close()
        server.stop()
