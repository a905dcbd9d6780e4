"""Dialogs end to end: CreateDialog, ChangeDialog, KickUser, GetDialogs,
GetUsersDialog, and who may do what."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from client_sdk import BadRequest, Forbidden, NotFound, Unprocessable
from protocol.codecs import Codec

from .support import refused

PNG = b"\x89PNG\r\n\x1a\n"




async def raw(client, name: str, body: dict) -> dict:
    """A request with a hand-made body; returns the whole answer."""
    return await client.call(name, body)


async def test_create_dialog_members_and_listing(user):
    alice, bob, carol = await user(), await user(), await user()
    key = await alice.create_dialog("Trip to Kazan", members=[bob.user_id, carol.user_id])
    assert re.fullmatch(r"[0-9a-f]{32}", key)

    roles = await bob.dialog_roles(key)
    assert roles.users == (alice.user_id, bob.user_id, carol.user_id)
    assert roles.owner == alice.user_id and roles.admins == ()
    assert await carol.dialog_members(key) == [alice.user_id, bob.user_id, carol.user_id]

    [seen] = await bob.dialogs()
    assert (seen.key, seen.name, seen.private, seen.role, seen.photo) == (key, "Trip to Kazan", True, "member", None)
    assert seen.last_message_at is None and seen.created_at is not None
    assert [d.role for d in await alice.dialogs()] == ["owner"]


async def test_create_dialog_answer_shape_and_boolean_spellings(user):
    alice, bob = await user(), await user()
    for spelling, private in (("true", True), ("1", True), (1, True), (True, True), ("false", False), ("0", False), (0, False)):
        answer = await raw(alice, "CreateDialog", {"dialog": {"name": f"p{spelling}", "private": spelling, "idUsers": [bob.user_id]}})
        assert answer["Status"] == {"code": 200, "message": "Dialog started"}
        listed = {d.key: d for d in await bob.dialogs(take=100)}
        assert listed[answer["hash"]].private is private
    answer = await raw(alice, "CreateDialog", {"dialog": {"name": "x", "private": "maybe"}})
    assert answer["Status"]["code"] == 400
    answer = await raw(alice, "CreateDialog", {"dialog": {"name": "x", "idUsers": ["three"]}})
    assert answer["Status"] == {"code": 400, "message": "dialog.idUsers: must be a list of positive integers"}
    answer = await raw(alice, "CreateDialog", {"name": "no dialog map"})
    assert answer["Status"] == {"code": 400, "message": "dialog: field is required"}
    answer = await raw(alice, "CreateDialog", {"dialog": {"name": "x" * 129}})
    assert answer["Status"] == {"code": 422, "message": "dialog.name: longer than 128 characters"}


async def test_create_dialog_with_unknown_users_names_them(user):
    alice, bob = await user(), await user()
    await refused(404, alice.create_dialog("x", members=[bob.user_id, 10**12, 10**12 + 1]), r"no user with id 1000000000000, 1000000000001$")
    assert await bob.dialogs() == []


async def test_creator_in_members_is_not_listed_twice(user):
    alice, bob = await user(), await user()
    key = await alice.create_dialog("self", members=[alice.user_id, bob.user_id, bob.user_id])
    assert await alice.dialog_members(key) == [alice.user_id, bob.user_id]


async def test_direct_dialog_with_a_blocked_user_is_refused_either_way(user):
    alice, bob, carol = await user(), await user(), await user()
    await bob.block(alice.user_id)
    await refused(403, alice.create_dialog("hi", members=[bob.user_id]), "one of you has blocked the other")
    await refused(403, bob.create_dialog("hi", members=[alice.user_id]), "one of you has blocked the other")
    # A group is no way around it either, for the one blocked or the one who blocked.
    await refused(403, alice.create_dialog("group", members=[bob.user_id, carol.user_id]), "one of you has blocked")
    await refused(403, bob.create_dialog("group", members=[alice.user_id, carol.user_id]), "one of you has blocked")
    await bob.unblock(alice.user_id)
    await alice.create_dialog("hi again", members=[bob.user_id])
    group = await alice.create_dialog("group", members=[bob.user_id, carol.user_id])
    assert await bob.dialog_members(group) == [alice.user_id, bob.user_id, carol.user_id]


async def test_a_blocked_user_cannot_add_the_blocker_to_any_dialog(user):
    """The back door: a dialog of one's own, then ChangeDialog adding the
    blocker.  Refused like CreateDialog, with the same words, and the blocker
    hears nothing of it (no event, so no name chosen by the blocked user)."""
    alice, bob, carol = await user(), await user(), await user()
    await alice.block(bob.user_id)
    alone = await bob.create_dialog("you can't hide", private=True)
    await refused(403, bob.change_dialog(alone, add_members=[alice.user_id]), "one of you has blocked the other")
    await refused(403, bob.change_dialog(alone, add_members=[carol.user_id, alice.user_id]), "one of you has blocked")
    assert await bob.dialog_members(alone) == [bob.user_id]  # carol was not added either: all or nothing
    # Alice, who blocked him, cannot pull him into a dialog either.
    mine = await alice.create_dialog("mine", members=[carol.user_id])
    await refused(403, alice.change_dialog(mine, add_members=[bob.user_id]), "one of you has blocked the other")
    # Alice's log has her block and her dialog, nothing of Bob's.
    events = await alice.call("GetEvents", {"after": 0})
    kinds = [(e["Kind"], e.get("name")) for e in events["Events"]]
    assert kinds == [("Blocked", None), ("DialogCreated", "mine")], kinds
    # A public dialog the blocker is in can still be joined by anyone: joining adds nobody else.
    public = await alice.create_dialog("public room", private=False)
    await bob.join(public)


async def test_dialog_photo_must_be_own_upload_or_already_public(user):
    alice, bob = await user(), await user()
    mine = await alice.upload_media(PNG + b"alice", "png")
    key = await alice.create_dialog("with photo", photo=mine)
    assert (await alice.dialogs())[0].photo == mine

    bobs = await bob.upload_media(PNG + b"bob", "png")
    # Someone else's private upload is answered exactly as a key that does not exist.
    stolen = await refused(404, alice.create_dialog("stolen", photo=bobs))
    ghost = await refused(404, alice.create_dialog("ghost", photo=bobs[::-1]))
    assert stolen.message.replace(bobs, "KEY") == ghost.message.replace(bobs[::-1], "KEY")
    await refused(404, alice.change_dialog(key, photo=bobs), "not found")

    # Once bob shows his picture as a dialog photo it is public: anyone may reuse it.
    await bob.create_dialog("bob's", photo=bobs)
    await alice.change_dialog(key, photo=bobs)
    assert (await alice.dialogs())[0].photo == bobs
    # A file Alice can see (attached in a dialog she is in) but did not upload is not hers to show.
    shared = await bob.create_dialog("shared", members=[alice.user_id])
    attached = await bob.upload_media(PNG + b"attached", "png")
    await bob.send_message(shared, "look", media=[attached])
    await refused(422, alice.change_dialog(key, photo=attached), "not your upload")


async def test_change_dialog_by_owner_and_admins_only(user):
    alice, bob, carol, dave = await user(), await user(), await user(), await user()
    key = await alice.create_dialog("Old name", members=[bob.user_id])

    await alice.change_dialog(key, name="New name", private=False, add_members=[carol.user_id])
    [item] = await bob.dialogs()
    assert (item.name, item.private) == ("New name", False)
    assert await bob.dialog_members(key) == [alice.user_id, bob.user_id, carol.user_id]

    # A member cannot change anything; a stranger does not see the dialog at all.
    await refused(403, bob.change_dialog(key, name="Mine now"), "only the owner or an admin can change this dialog")
    await refused(403, bob.change_dialog(key, add_members=[dave.user_id]), "only the owner or an admin")
    await refused(404, dave.change_dialog(key, name="x"), "^dialog not found$")
    await refused(404, alice.change_dialog("0" * 32, name="x"), "^dialog not found$")

    # The owner appoints an admin, who may then rename and add members but not appoint admins.
    await alice.change_dialog(key, admins=[bob.user_id])
    roles = await carol.dialog_roles(key)
    assert roles.owner == alice.user_id and roles.admins == (bob.user_id,)
    await bob.change_dialog(key, name="Renamed by admin", add_members=[dave.user_id])
    assert (await dave.dialogs())[0].name == "Renamed by admin"
    await refused(403, bob.change_dialog(key, admins=[carol.user_id]), "only the owner can appoint admins")

    # A new member can be made admin in the same request; an outsider cannot.
    eve, frank = await user(), await user()
    await alice.change_dialog(key, add_members=[eve.user_id], admins=[eve.user_id])
    assert (await alice.dialog_roles(key)).admins == (bob.user_id, eve.user_id)
    await refused(422, alice.change_dialog(key, admins=[frank.user_id]), f"not members of this dialog: {frank.user_id}$")
    await refused(404, alice.change_dialog(key, add_members=[10**12]), "no user with id 1000000000000$")


async def test_change_dialog_malformed(user):
    alice = await user()
    key = await alice.create_dialog("x")
    answer = await raw(alice, "ChangeDialog", {"dialog": {"pkDialog": key}})
    assert answer["Status"] == {"code": 400, "message": "dialog: nothing to change: fill name, private, photo, IdUsers or admins"}
    answer = await raw(alice, "ChangeDialog", {"dialog": {"name": "x"}})
    assert answer["Status"] == {"code": 400, "message": "dialog.pkDialog: field is required"}
    # The original's example: "private": "0", "IdUsers" spelled with capitals; success is 200 (decision 10).
    answer = await raw(alice, "ChangeDialog", {"dialog": {"PkDialog": key, "private": "0", "name": "OkTested"}})
    assert answer["Status"] == {"code": 200, "message": "Dialog changed"}
    assert (await alice.dialogs())[0].private is False


async def test_kick_rules(user):
    owner, admin, admin2, member, other = [await user() for _ in range(5)]
    key = await owner.create_dialog("club", members=[admin.user_id, admin2.user_id, member.user_id, other.user_id])
    await owner.change_dialog(key, admins=[admin.user_id, admin2.user_id])

    await refused(403, member.kick(key, other.user_id), "only the owner or an admin can remove members")
    await refused(403, admin.kick(key, owner.user_id), "the owner cannot be removed")
    await refused(403, admin.kick(key, admin2.user_id), "only the owner can remove an admin")
    await refused(404, admin.kick(key, 10**12), "user 1000000000000 is not a member of this dialog")

    await admin.kick(key, other.user_id)
    assert other.user_id not in await owner.dialog_members(key)
    await refused(404, other.dialog_members(key), "^dialog not found$")
    await refused(404, other.messages(key), "^dialog not found$")
    await refused(404, other.send_message(key, "let me back in"), "^dialog not found$")
    await refused(404, other.kick(key, member.user_id), "^dialog not found$")
    assert await other.dialogs() == []

    await owner.kick(key, admin2.user_id)
    await member.leave(key)
    assert await owner.dialog_members(key) == [owner.user_id, admin.user_id]


async def test_owner_leaving_hands_the_dialog_over(user):
    alice, bob, carol = await user(), await user(), await user()
    key = await alice.create_dialog("handover", members=[bob.user_id, carol.user_id])
    await alice.change_dialog(key, admins=[carol.user_id])
    await alice.leave(key)
    roles = await bob.dialog_roles(key)
    assert roles.users == (bob.user_id, carol.user_id)
    assert roles.owner == carol.user_id and roles.admins == ()
    await carol.change_dialog(key, name="carol's now")
    # Without admins the longest-standing member inherits.
    await carol.leave(key)
    assert (await bob.dialog_roles(key)).owner == bob.user_id
    await bob.leave(key)
    assert await bob.dialogs() == []


async def test_get_users_dialog_members_only(user):
    alice, bob = await user(), await user()
    key = await alice.create_dialog("x")
    await refused(404, bob.dialog_members(key), "^dialog not found$")
    answer = await raw(alice, "GetUsersDialog", {"pkDialog": key})
    assert answer == {
        "Status": {"code": 200, "message": "Members listed"},
        "UsersId": [alice.user_id],
        "Owner": alice.user_id,
        "Admins": [],
    }
    answer = await raw(alice, "GetUsersDialog", {})
    assert answer["Status"] == {"code": 400, "message": "pkDialog: field is required"}


async def test_get_dialogs_orders_by_activity_and_pages(user):
    alice, bob = await user(), await user()
    first = await alice.create_dialog("first", members=[bob.user_id])
    second = await alice.create_dialog("second", members=[bob.user_id])
    third = await alice.create_dialog("third", members=[bob.user_id])
    assert [d.key for d in await bob.dialogs()] == [third, second, first]

    await alice.send_message(first, "bump")
    listed = await bob.dialogs()
    assert [d.key for d in listed] == [first, third, second]
    assert listed[0].last_message_at is not None and listed[1].last_message_at is None

    assert [d.key for d in await bob.dialogs(take=2)] == [first, third]
    assert [d.key for d in await bob.dialogs(take=2, skip=2)] == [second]
    assert await bob.dialogs(take=2, skip=3) == []


async def test_get_dialogs_since_a_date(user):
    alice, bob = await user(), await user()
    quiet = await alice.create_dialog("quiet", members=[bob.user_id])
    busy = await alice.create_dialog("busy", members=[bob.user_id])
    renamed = await alice.create_dialog("renamed", members=[bob.user_id])
    mark = max(d.created_at for d in await bob.dialogs())
    assert await bob.dialogs(date=mark) == []

    await alice.send_message(busy, "news")
    await alice.change_dialog(renamed, name="renamed!")
    joined = await alice.create_dialog("new one", members=[bob.user_id])
    changed = [d.key for d in await bob.dialogs(date=mark)]
    assert changed == [joined, busy, renamed]  # most recent activity first
    assert quiet not in changed
    # The original's date style is understood too.
    old = (mark - timedelta(days=1)).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-4]
    assert len(await bob.dialogs(date=old)) == 4
    assert await bob.dialogs(date=datetime.now(UTC) + timedelta(minutes=5)) == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"date": "-1", "take": 0, "skip": 0}, {"code": 422, "message": "take: must be at least 1"}),
        ({"date": "-1", "take": 101, "skip": 0}, {"code": 422, "message": "take: must be at most 100"}),
        ({"date": "-1", "take": 10, "skip": -1}, {"code": 422, "message": "skip: must be at least 0"}),
        ({"date": "-1", "take": "ten"}, {"code": 400, "message": "take: must be an integer"}),
        ({"date": "yesterday", "take": 10}, None),
    ],
)
async def test_get_dialogs_refuses_bad_paging(user, body, status):
    alice = await user()
    answer = await raw(alice, "GetDialogs", body)
    if status is None:
        assert answer["Status"]["code"] == 400
        assert answer["Status"]["message"].startswith("date: not a date")
    else:
        assert answer["Status"] == status


#: A date is an instant in UTC between these two; one whose offset takes it
#: outside is refused with 422 (it used to overflow into a 500).
OUT_OF_RANGE = {"code": 422, "message": "date: must be from 0001-01-01T00:00:00.000000Z to "
                                       "9999-12-31T23:59:59.999999Z (in UTC)"}


@pytest.mark.parametrize("codec", [Codec.MSGPACK, Codec.JSON], ids=["msgpack", "json"])
async def test_get_dialogs_dates_at_the_ends_of_the_calendar(user, server, codec):
    alice, bob = await user(), await user()
    key = await alice.create_dialog("ends", members=[bob.user_id])
    mark = len(server.log)
    for date in ("0001-01-01T00:00:00+05:00", "0001-01-01 04:59:59.999999+05:00", "9999-12-31T23:59:59-05:00",
                 "9999-12-31T20:00:00-04:00:00.000001"):
        for paging in ({}, {"take": 100, "skip": 2_000_000_000}):
            answer = await alice.call("GetDialogs", {"date": date, **paging}, codec=codec)
            assert answer["Status"] == OUT_OF_RANGE, (date, paging)
    # The ends themselves, and an offset that keeps a date inside, are dates like any other.
    for date, keys in (("0001-01-01T00:00:00Z", [key]), ("0001-01-01T00:00:00-05:00", [key]),
                       ("9999-12-31T23:59:59.999999Z", []), ("9999-12-31T23:59:59+05:00", [])):
        answer = await alice.call("GetDialogs", {"date": date, "take": 100, "skip": 0}, codec=codec)
        assert answer["Status"]["code"] == 200, (date, answer)
        assert [d["hash"] for d in answer["Dialogs"]] == keys, date
    assert server.alarms(mark) == []


async def test_get_dialogs_answer_shape(user):
    alice = await user()
    key = await alice.create_dialog("Это диалог", private=False)
    answer = await raw(alice, "GetDialogs", {"date": "-1", "take": 15, "skip": 0})
    assert answer["Status"] == {"code": 200, "message": "List formed"}
    [item] = answer["Dialogs"]
    assert item["hash"] == key and item["name"] == "Это диалог" and item["photo"] == "" and item["private"] is False
    assert item["lastMessageAt"] == "" and item["role"] == "owner"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", item["date"])


async def test_join_public_dialog_but_not_private(user):
    alice, bob = await user(), await user()
    public = await alice.create_dialog("Open club", private=False)
    private = await alice.create_dialog("Closed club", private=True)
    await refused(404, bob.join(private), "^dialog not found$")
    await bob.join(public)
    assert await alice.dialog_members(public) == [alice.user_id, bob.user_id]
    [item] = await bob.dialogs()
    assert (item.key, item.role) == (public, "member")
    # Joining is all a stranger may do: adding others is refused as for any non-member.
    carol = await user()
    await refused(404, carol.change_dialog(public, add_members=[carol.user_id, bob.user_id]), "^dialog not found$")


async def test_typed_errors_are_the_sdk_classes(user):
    alice = await user()
    with pytest.raises(NotFound):
        await alice.dialog_members("nope")
    with pytest.raises(Unprocessable):
        await alice.dialogs(take=1000)
    with pytest.raises(Forbidden):
        bob = await user()
        key = await alice.create_dialog("x", members=[bob.user_id])
        await bob.change_dialog(key, name="y")
    with pytest.raises(BadRequest):
        await alice.dialogs(date="not a date")
