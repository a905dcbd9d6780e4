"""Messages end to end: SendMessage (add, edit, delete, deleteOnlyMe, media),
GetMessages (pages, catch-up, one message), GetDelMessages, the dialog's media
listing, and every refusal with its exact Status."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime

import pytest

from protocol.codecs import Codec, decode_body, encode_body
from protocol.frames import FrameKind, encode_request
from protocol.requests.dialogs import format_date

from .support import ServerProcess, refused
from .test_wire import Wire

PNG = b"\x89PNG\r\n\x1a\n"
DATE_RE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"




def send_body(operation: str, dialog: str, **info) -> dict:
    return {"operation": operation, "message": {"infoMessage": {"pkDialog": dialog, **info}}}


async def test_a_conversation_between_three_users(user):
    alice, bob, carol = await user(), await user(), await user()
    await alice.send_friend_request(bob.user_id, "from school")
    await bob.accept_friend(alice.user_id)

    # A private chat between alice and bob.
    direct = await alice.create_dialog("", members=[bob.user_id])
    greeting = await alice.send_message(direct, "Привет, Боб! Как дела?")
    reply = await bob.send_message(direct, "Hello Alice, how are you?")
    history = await bob.messages(direct)
    assert [(m.key, m.author_id, m.content) for m in history] == [
        (reply, bob.user_id, "Hello Alice, how are you?"),
        (greeting, alice.user_id, "Привет, Боб! Как дела?"),
    ]
    assert history[0].created_at >= history[1].created_at
    assert history[0].updated_at is None and history[0].deleted_at is None and history[0].media == ()

    # A group with photos in a chosen display order.
    group = await alice.create_dialog("Weekend", members=[bob.user_id, carol.user_id])
    beach = await alice.upload_media(PNG + b"beach", "png")
    sunset = await alice.upload_media(PNG + b"sunset", "png")
    photos = await alice.send_message(group, "Photos from the trip", media=[beach, sunset], order=[2, 1])
    [seen] = await carol.messages(group)
    assert (seen.key, seen.content, seen.media, seen.order) == (photos, "Photos from the trip", (sunset, beach), (1, 2))
    assert (await carol.get_media(beach)).data == PNG + b"beach"
    listing = await carol.dialog_media(group)
    assert [(i.key, i.extension, i.size, i.message_key) for i in listing] == [
        (sunset, "png", len(PNG + b"sunset"), photos),
        (beach, "png", len(PNG + b"beach"), photos),
    ]

    # bob fixes a typo; alice sees the edit.
    await bob.edit_message(direct, reply, "Hello Alice, how are you doing?")
    edited = await alice.message(direct, reply)
    assert edited.content == "Hello Alice, how are you doing?" and edited.updated_at is not None

    # carol posts in the wrong chat and deletes it for everyone.
    oops = await carol.send_message(group, "oops, wrong chat")
    await carol.delete_message(group, oops)
    assert [m.key for m in await alice.messages(group)] == [photos]
    [tombstone] = await alice.deleted_messages(group)
    assert (tombstone.key, tombstone.author_id, tombstone.content, tombstone.media) == (oops, carol.user_id, "", ())
    assert tombstone.deleted_at is not None

    # bob hides alice's greeting for himself only.
    await bob.hide_message(direct, greeting)
    assert [m.key for m in await bob.messages(direct)] == [reply]
    assert [m.key for m in await alice.messages(direct)] == [reply, greeting]

    # Search in both languages, case-insensitive, by word prefix.
    assert (await alice.search_dialogs("привет")).dialogs == (direct,)
    assert (await bob.search_dialogs("привет")).dialogs == ()  # hidden for bob
    assert (await alice.search_dialogs("HOW ARE")).dialogs == (direct,)
    assert (await carol.search_dialogs("trip")).dialogs == (group,)
    assert (await carol.search_dialogs("oops")).dialogs == ()  # deleted
    assert [h.key for h in await alice.search_messages("Прив", direct)] == [greeting]
    assert [(h.key, h.dialog) for h in await alice.search_messages("hello wor", [direct, group])] == []
    assert [(h.key, h.dialog) for h in await alice.search_messages("hello ali", [direct, group])] == [(reply, direct)]

    # alice removes carol from the group: carol no longer sees it or anything in it.
    await alice.kick(group, carol.user_id)
    assert [d.key for d in await carol.dialogs()] == []
    await refused(404, carol.messages(group), "^dialog not found$")
    await refused(404, carol.message(group, photos), "^dialog not found$")
    await refused(404, carol.dialog_media(group), "^dialog not found$")
    await refused(404, carol.search_messages("trip", group), "^dialog not found$")
    await refused(404, carol.send_message(group, "let me back"), "^dialog not found$")
    assert (await carol.search_dialogs("trip")).dialogs == ()
    # ...while the others carry on.
    await bob.send_message(group, "bye carol")
    assert [m.content for m in await alice.messages(group)] == ["bye carol", "Photos from the trip"]
    assert [d.key for d in await alice.dialogs()] == [group, direct]


async def test_send_answer_shape_and_message_shape(user):
    alice = await user()
    key = await alice.create_dialog("shape")
    answer = await alice.call("SendMessage", send_body("add", key, content="Hello world"))
    assert answer["Status"] == {"code": 200, "message": "Message sent"}
    assert re.fullmatch(r"[0-9a-f]{32}", answer["msgkey"])
    page = await alice.call("GetMessages", {"pkDialog": key, "date": "-1", "take": 15, "skip": 0})
    assert page["Status"] == {"code": 200, "message": "List formed"}
    [item] = page["Msg"]
    info = dict(item["infoMessage"])
    assert re.fullmatch(DATE_RE, info.pop("date"))
    assert info == {
        "msgKey": answer["msgkey"],
        "idUser": alice.user_id,
        "content": "Hello world",
        "updateAt": "",
        "deleteAt": "",
        "forwardedKey": "",
        "read": False,
        "important": False,
    }
    assert item["hash"] is None and item["order"] is None
    one = await alice.call("GetMessages", {"pkDialog": key, "msgkey": answer["msgkey"]})
    assert one["Status"] == {"code": 200, "message": "Message found"} and one["Msg"] == page["Msg"]


async def raw_answer(server: ServerProcess, name: str, body: dict, codec: Codec) -> bytes:
    """The body of the server's answer to one request, byte for byte as sent."""
    wire = await Wire.open(server)
    try:
        await wire.send(encode_request(1, name, body, codec))
        frame = await wire.frame()
        assert frame.kind == FrameKind.RESPONSE, frame
        return bytes(frame.body)
    finally:
        await wire.close()


INFO_KEYS = ["msgKey", "idUser", "date", "content", "updateAt", "deleteAt", "forwardedKey", "read", "important"]


async def test_history_page_bytes_are_the_message_items(user, server):
    """A page's answer is exactly the bytes of its messages' one-message items
    (same keys in the same order, same value types, the API's date text), in
    both codecs, for the newest page, a catch-up page and an empty page."""
    alice, bob = await user(), await user()
    key = await alice.create_dialog("bytes", members=[bob.user_id])
    first = await alice.upload_media(PNG + b"first", "png")
    second = await alice.upload_media(PNG + b"second", "png")
    photos = await alice.send_message(key, "Фото с поездки ✓", media=[first, second], order=[2, 1])
    plain = await bob.send_message(key, "plain and important", important=True)
    forwarded = await bob.forward_message(key, photos, comment="look")
    edited = await alice.send_message(key, "typo")
    await alice.edit_message(key, edited, "fixed")
    hidden = await alice.send_message(key, "hidden from bob")
    await bob.hide_message(key, hidden)
    await alice.delete_message(key, await alice.send_message(key, "deleted"))
    await bob.mark_read(key, plain)
    empty = await alice.create_dialog("nothing yet", members=[bob.user_id])

    pages = {"-1": [edited, forwarded, plain, photos], "2000-01-01T00:00:00Z": [photos, plain, forwarded, edited]}
    for codec in (Codec.MSGPACK, Codec.JSON):
        for date, expected in pages.items():
            request = {"pkDialog": key, "date": date, "take": 50, "skip": 0, "sessia": bob.sessia()}
            page = await raw_answer(server, "GetMessages", request, codec)
            items = []
            for msgkey in expected:
                one = await raw_answer(server, "GetMessages", {"pkDialog": key, "msgkey": msgkey, "sessia": bob.sessia()}, codec)
                items += decode_body(codec, one)["Msg"]
            assert page == encode_body(codec, {"Status": {"code": 200, "message": "List formed"}, "Msg": items})
            for item in items:
                assert list(item) == ["infoMessage", "hash", "order"]
                info = item["infoMessage"]
                assert list(info) == INFO_KEYS
                assert re.fullmatch(DATE_RE, info["date"])
                assert format_date(datetime.fromisoformat(info["date"])) == info["date"]
                assert (info["updateAt"] != "") == (info["msgKey"] == edited)
                assert info["updateAt"] == "" or re.fullmatch(DATE_RE, info["updateAt"])
                assert info["deleteAt"] == ""
                assert type(info["idUser"]) is int and type(info["read"]) is bool and type(info["important"]) is bool
                assert info["important"] == (info["msgKey"] == plain)
                assert info["forwardedKey"] == (photos if info["msgKey"] == forwarded else "")
                has_media = info["msgKey"] in (photos, forwarded)
                assert item["hash"] == ([second, first] if has_media else None)
                assert item["order"] == ([1, 2] if has_media else None)
        request = {"pkDialog": empty, "date": "-1", "take": 50, "skip": 0, "sessia": bob.sessia()}
        assert await raw_answer(server, "GetMessages", request, codec) == encode_body(
            codec, {"Status": {"code": 200, "message": "List formed"}, "Msg": []}
        )


async def test_add_is_idempotent_with_a_client_key(user):
    alice, bob = await user(), await user()
    key = await alice.create_dialog("retry", members=[bob.user_id])
    first = await alice.call("SendMessage", send_body("add", key, content="only once", msgkey="client-key-0001"))
    again = await alice.call("SendMessage", send_body("add", key, content="only once", msgkey="client-key-0001"))
    assert first["Status"]["message"] == "Message sent" and first["msgkey"] == "client-key-0001"
    assert again["Status"] == {"code": 200, "message": "Message already sent"} and again["msgkey"] == "client-key-0001"
    assert [m.content for m in await bob.messages(key)] == ["only once"]

    # Concurrent retries still make one message.
    keys = await asyncio.gather(*(alice.send_message(key, "burst", msgkey="burst_key_42") for _ in range(8)))
    assert set(keys) == {"burst_key_42"}
    assert [m.content for m in await bob.messages(key)] == ["burst", "only once"]

    await refused(409, bob.send_message(key, "mine?", msgkey="client-key-0001"), "already used by another message")
    # The same key in another dialog is another message.
    other = await alice.create_dialog("other")
    assert await alice.send_message(other, "elsewhere", msgkey="client-key-0001") == "client-key-0001"

    for bad in ("short", "x" * 65, "has space in it", "кириллица-ключ"):
        await refused(422, alice.send_message(key, "x", msgkey=bad), "msgkey: 8 to 64 characters")


async def test_add_refusals(user):
    alice, bob, stranger = await user(), await user(), await user()
    key = await alice.create_dialog("rules", members=[bob.user_id])
    await refused(404, stranger.send_message(key, "hi"), "^dialog not found$")
    await refused(404, alice.send_message("0" * 32, "hi"), "^dialog not found$")
    await refused(422, alice.send_message(key, "x" * 4097), "content: longer than 4096 characters")
    assert await alice.send_message(key, "x" * 4096)
    await refused(422, alice.send_message(key, "   "), "a message needs text or media")

    mine = await alice.upload_media(PNG + b"a", "png")
    bobs = await bob.upload_media(PNG + b"b", "png")
    await refused(404, alice.send_message(key, "pic", media=[mine, bobs]), f"media '{bobs}' not found among your uploads")
    await refused(404, alice.send_message(key, "pic", media=["nope-nope"]), "media 'nope-nope' not found")
    await refused(422, alice.send_message(key, "pic", media=[mine], order=[1, 2]), "2 positions for 1 media keys")
    await refused(422, alice.send_message(key, "pic", media=[mine, mine]), "the same media key twice")
    # Media alone is a message.
    only_media = await alice.send_message(key, "", media=[mine])
    assert (await bob.message(key, only_media)).media == (mine,)

    answer = await alice.call("SendMessage", {"operation": "shout", "message": {"infoMessage": {"pkDialog": key}}})
    assert answer["Status"] == {"code": 422, "message": "operation: must be one of add, edit, delete, deleteOnlyMe"}
    answer = await alice.call("SendMessage", {"operation": "add", "message": {"infoMessage": {"content": "x"}}})
    assert answer["Status"] == {"code": 400, "message": "message.infoMessage.pkDialog: field is required"}
    answer = await alice.call("SendMessage", {"operation": "add"})
    assert answer["Status"] == {"code": 400, "message": "message: field is required"}


async def test_direct_messages_stop_when_either_blocks(user):
    alice, bob, carol = await user(), await user(), await user()
    direct = await alice.create_dialog("", members=[bob.user_id])
    group = await alice.create_dialog("three", members=[bob.user_id, carol.user_id])
    await alice.send_message(direct, "before")
    await bob.block(alice.user_id)
    await refused(403, alice.send_message(direct, "after"), "one of you has blocked the other")
    await refused(403, bob.send_message(direct, "after"), "one of you has blocked the other")
    # In a group the block does not silence anyone.
    await alice.send_message(group, "group still works")
    await bob.unblock(alice.user_id)
    await alice.send_message(direct, "after unblock")
    assert [m.content for m in await bob.messages(direct)] == ["after unblock", "before"]


async def test_edit_rules(user):
    alice, bob, stranger = await user(), await user(), await user()
    key = await alice.create_dialog("edits", members=[bob.user_id])
    msg = await alice.send_message(key, "first draft")
    await refused(403, bob.edit_message(key, msg, "hijacked"), "only the author can edit a message")
    await refused(404, stranger.edit_message(key, msg, "x"), "^dialog not found$")
    await refused(404, alice.edit_message(key, "no-such-message", "x"), "^message not found$")
    await refused(422, alice.edit_message(key, msg, "  "), "content: must not be empty")
    answer = await alice.call("SendMessage", send_body("edit", key, msgkey=msg))
    assert answer["Status"] == {"code": 400, "message": "message.infoMessage.content: field is required"}
    answer = await alice.call("SendMessage", send_body("edit", key, content="x"))
    assert answer["Status"] == {"code": 400, "message": "message.infoMessage.msgkey: field is required"}

    answer = await alice.call("SendMessage", send_body("edit", key, msgkey=msg, content="final"))
    assert answer["Status"] == {"code": 200, "message": "Message edited"} and answer["msgkey"] == msg
    m = await bob.message(key, msg)
    assert m.content == "final" and m.updated_at is not None and m.updated_at >= m.created_at

    await alice.delete_message(key, msg)
    await refused(410, alice.edit_message(key, msg, "resurrect"), "the message was deleted")


async def test_delete_rules_and_tombstones(user):
    owner, admin, member, author = await user(), await user(), await user(), await user()
    key = await owner.create_dialog("moderated", members=[admin.user_id, member.user_id, author.user_id])
    await owner.change_dialog(key, admins=[admin.user_id])
    pic = await author.upload_media(PNG + b"spam", "png")
    spam = await author.send_message(key, "buy now", media=[pic])
    rude = await author.send_message(key, "rude words")
    mine = await author.send_message(key, "regret")

    await refused(403, member.delete_message(key, spam), "only the author, the owner or an admin")
    await admin.delete_message(key, spam)
    await owner.delete_message(key, rude)
    answer = await author.call("SendMessage", send_body("delete", key, msgkey=mine))
    assert answer["Status"] == {"code": 200, "message": "Message deleted"} and answer["msgkey"] == mine
    await refused(410, author.delete_message(key, mine), "the message was already deleted")
    await refused(404, author.delete_message(key, "no-such-message"), "^message not found$")

    assert await member.messages(key) == []
    for gone in (spam, rude, mine):
        await refused(404, member.message(key, gone), "^message not found$")
    assert await member.dialog_media(key) == []
    tombstones = await member.deleted_messages(key)
    assert [t.key for t in tombstones] == [mine, rude, spam]
    assert all(t.content == "" and t.media == () and t.deleted_at is not None for t in tombstones)
    assert all(t.author_id == author.user_id for t in tombstones)
    raw = await member.call("GetDelMessages", {"pkDialog": key, "date": "-1", "take": 1, "skip": 0})
    [item] = raw["Msg"]
    assert item["hash"] is None and item["infoMessage"]["content"] == ""
    assert re.fullmatch(DATE_RE, item["infoMessage"]["deleteAt"])
    assert [t.key for t in await member.deleted_messages(key, take=2, skip=1)] == [rude, spam]
    # Since a date: tombstones made after it, oldest first.
    since = tombstones[-1].deleted_at
    assert [t.key for t in await member.deleted_messages(key, date=since)] == [rude, mine]
    stranger = await user()
    await refused(404, stranger.deleted_messages(key), "^dialog not found$")


async def test_delete_only_me(user):
    alice, bob = await user(), await user()
    key = await alice.create_dialog("hide", members=[bob.user_id])
    pic = await alice.upload_media(PNG + b"x", "png")
    msg = await alice.send_message(key, "hidden treasure", media=[pic])
    other = await alice.send_message(key, "visible")
    answer = await bob.call("SendMessage", send_body("deleteOnlyMe", key, msgkey=msg))
    assert answer["Status"] == {"code": 200, "message": "Message deleted for you"}
    await bob.hide_message(key, msg)  # again: nothing changes, still fine

    assert [m.key for m in await bob.messages(key)] == [other]
    await refused(404, bob.message(key, msg), "^message not found$")
    assert await bob.dialog_media(key) == []
    assert await bob.deleted_messages(key) == []  # hidden is not deleted for everyone
    assert (await bob.search_dialogs("treasure")).dialogs == ()
    # alice still has it all.
    assert [m.key for m in await alice.messages(key)] == [other, msg]
    assert [i.key for i in await alice.dialog_media(key)] == [pic]
    assert [h.key for h in await alice.search_messages("treasure", key)] == [msg]

    await alice.delete_message(key, other)
    await refused(410, bob.hide_message(key, other), "the message was deleted")
    await refused(404, bob.hide_message(key, "no-such-message"), "^message not found$")


async def test_paging_and_catch_up(user):
    alice, bob = await user(), await user()
    key = await alice.create_dialog("pages", members=[bob.user_id])
    sent = [await alice.send_message(key, f"message {i}") for i in range(7)]
    newest_first = list(reversed(sent))
    assert [m.key for m in await bob.messages(key, take=3)] == newest_first[:3]
    assert [m.key for m in await bob.messages(key, take=3, skip=3)] == newest_first[3:6]
    assert [m.key for m in await bob.messages(key, take=3, skip=6)] == newest_first[6:]
    assert await bob.messages(key, take=3, skip=9) == []

    # Catch-up: what was created or edited after the last message bob saw, oldest first.
    seen = await bob.message(key, sent[3])
    await alice.edit_message(key, sent[1], "message 1, edited")
    later = [m.key for m in await bob.messages(key, date=seen.created_at)]
    assert later == [sent[1], sent[4], sent[5], sent[6]]
    assert [m.key for m in await bob.messages(key, date=seen.created_at, take=2, skip=1)] == [sent[4], sent[5]]


@pytest.mark.parametrize("codec", [Codec.MSGPACK, Codec.JSON], ids=["msgpack", "json"])
@pytest.mark.parametrize("operation", ["edit", "delete", "deleteOnlyMe"])
async def test_a_blank_msgkey_names_no_message(user, server, operation, codec):
    """The message to change must be named: a blank key is refused like any
    malformed one (it used to reach the handler and answer 500)."""
    alice = await user()
    key = await alice.create_dialog("blank")
    await alice.send_message(key, "still here")
    mark = len(server.log)
    for blank in ("", "   ", "\t"):
        answer = await alice.call("SendMessage", send_body(operation, key, msgkey=blank, content="x"), codec=codec)
        assert answer["Status"] == {
            "code": 422, "message": "message.infoMessage.msgkey: 8 to 64 characters of 0-9, a-z, A-Z, '_' or '-'"
        }, blank
    assert [m.content for m in await alice.messages(key)] == ["still here"]
    assert server.alarms(mark) == []


@pytest.mark.parametrize("name", ["GetMessages", "GetDelMessages"])
async def test_history_dates_at_the_ends_of_the_calendar(user, server, name):
    alice = await user()
    key = await alice.create_dialog("ends")
    kept = await alice.send_message(key, "dated")
    gone = await alice.send_message(key, "gone")
    await alice.delete_message(key, gone)
    mark = len(server.log)
    for codec in (Codec.MSGPACK, Codec.JSON):
        for date in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59.999999-00:01"):
            for paging in ({}, {"take": 1, "skip": 5}):
                answer = await alice.call(name, {"pkDialog": key, "date": date, **paging}, codec=codec)
                assert answer["Status"] == {
                    "code": 422, "message": "date: must be from 0001-01-01T00:00:00.000000Z to "
                                            "9999-12-31T23:59:59.999999Z (in UTC)"
                }, (date, paging)
        early = await alice.call(name, {"pkDialog": key, "date": "0001-01-01T00:00:00-05:00"}, codec=codec)
        assert early["Status"]["code"] == 200
        assert [m["infoMessage"]["msgKey"] for m in early["Msg"]] == [gone if name == "GetDelMessages" else kept]
        late = await alice.call(name, {"pkDialog": key, "date": "9999-12-31T23:59:59.999999Z"}, codec=codec)
        assert late["Status"]["code"] == 200 and late["Msg"] == []
    assert server.alarms(mark) == []


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ({"take": 0}, {"code": 422, "message": "take: must be at least 1"}),
        ({"take": 101}, {"code": 422, "message": "take: must be at most 100"}),
        ({"skip": -5}, {"code": 422, "message": "skip: must be at least 0"}),
        ({"skip": 2**40}, {"code": 422, "message": "skip: must be at most 2000000000"}),
        ({"date": "31.12.2023"}, {"code": 400}),
        ({"msgkey": "bad key!"}, {"code": 422, "message": "msgkey: 8 to 64 characters of 0-9, a-z, A-Z, '_' or '-'"}),
    ],
)
async def test_get_messages_refuses_bad_paging(user, extra, status):
    alice = await user()
    key = await alice.create_dialog("x")
    for name in ("GetMessages", "GetDelMessages") if "msgkey" not in extra else ("GetMessages",):
        answer = await alice.call(name, {"pkDialog": key, "date": "-1", "take": 10, "skip": 0, **extra})
        assert {k: answer["Status"][k] for k in status} == status, (name, answer)


async def test_dialog_media_listing_pages(user):
    alice, bob = await user(), await user()
    key = await alice.create_dialog("album", members=[bob.user_id])
    files = [await alice.upload_media(PNG + bytes([i]), "png") for i in range(5)]
    first = await alice.send_message(key, "two", media=files[:2])
    second = await alice.send_message(key, "three", media=files[2:])
    listing = await bob.dialog_media(key, take=10)
    assert [(i.key, i.message_key) for i in listing] == [
        (files[2], second), (files[3], second), (files[4], second), (files[0], first), (files[1], first)
    ]
    assert [i.key for i in await bob.dialog_media(key, take=2, skip=2)] == [files[4], files[0]]
    answer = await bob.call("GetMedia", {"PkDialog": key, "take": 1, "skip": 0})
    [item] = answer["Media"]
    assert set(item) == {"hash", "extension", "size", "msgKey", "date"}
    answer = await bob.call("GetMedia", {"PkDialog": key, "take": 500, "skip": 0})
    assert answer["Status"] == {"code": 422, "message": "take: must be at most 100"}
    stranger = await user()
    await refused(404, stranger.dialog_media(key), "^dialog not found$")


async def test_original_spellings_are_accepted(user):
    alice = await user()
    key = await alice.create_dialog("spellings")
    answer = await alice.call(
        "SendMessage",
        {"Operation": "ADD", "Message": {"InfoMessage": {"PkDialog": key, "Content": "case does not matter", "MsgKey": "CaseKey-01"}}},
    )
    assert answer["Status"]["code"] == 200 and answer["msgkey"] == "CaseKey-01"
    answer = await alice.call("GetMessages", {"PKDIALOG": key, "MSGKEY": "CaseKey-01"})
    assert answer["Msg"][0]["infoMessage"]["content"] == "case does not matter"


async def test_a_burst_of_sends_is_answered_one_by_one(user):
    """Sends that arrive together are stored together (one statement per
    batch): each still gets its own answer, and every member's events come
    in the order of the dialog's history, numbered without gaps."""
    alice, bob, carol, stranger = await user(), await user(), await user(), await user()
    group = await alice.create_dialog("burst", members=[bob.user_id, carol.user_id])
    direct = await alice.create_dialog("", members=[bob.user_id])
    await bob.block(alice.user_id)
    mine = await alice.upload_media(PNG + b"burst", "png")
    bobs = await bob.upload_media(PNG + b"bobs", "png")
    before = {c.user_id: (await c.request("GetEvents", {"after": 0, "take": 1000}))["LastSeq"] for c in (alice, bob, carol)}

    sends = [alice.send_message(group, f"a{i}") for i in range(20)]
    sends += [bob.send_message(group, f"b{i}", media=[bobs] if i == 3 else ()) for i in range(10)]
    sends += [carol.send_message(group, "c", msgkey="carol-burst-key")] * 3
    sends += [
        alice.send_message(direct, "blocked"),
        stranger.send_message(group, "not a member"),
        alice.send_message(group, "not mine", media=[bobs]),
        alice.send_message(group, "mine", media=[mine]),
    ]
    outcomes = await asyncio.gather(*sends, return_exceptions=True)
    keys, refusals = outcomes[:-4], outcomes[-4:]
    assert all(isinstance(k, str) for k in keys), keys
    assert len(set(keys)) == 20 + 10 + 1
    assert [type(e).__name__ for e in refusals[:3]] == ["Forbidden", "NotFound", "NotFound"]
    assert isinstance(refusals[3], str)

    history = [m.key for m in reversed(await carol.messages(group, take=100))]
    assert sorted(history) == sorted({*keys, refusals[3]})
    assert (await carol.message(group, refusals[3])).media == (mine,)
    for member in (alice, bob, carol):
        page = await member.request("GetEvents", {"after": before[member.user_id], "take": 1000})
        events = [e for e in page["Events"] if e["Kind"] == "NewMessage"]
        assert [e["Seq"] for e in page["Events"]] == list(range(before[member.user_id] + 1, page["LastSeq"] + 1))
        assert [e["Msg"]["infoMessage"]["msgKey"] for e in events] == history
