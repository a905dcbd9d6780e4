"""Search end to end: everyWhere and inDialogs, in Russian and English,
members only, never hidden or deleted messages."""

from __future__ import annotations

import uuid

import pytest

from .support import refused


def word() -> str:
    """A token no other test's messages contain (the server is shared)."""
    return "w" + uuid.uuid4().hex[:12]


async def test_case_insensitive_substring_in_both_languages(user):
    alice, bob = await user(), await user()
    key = await alice.create_dialog("langs", members=[bob.user_id])
    tag = word()
    ru = await alice.send_message(key, f"{tag} Привет, как ДЕЛА? Ёлка в лесу")
    en = await bob.send_message(key, f"{tag} Hello World, see you at 5")

    async def found(text: str) -> list[str]:
        return [h.key for h in await alice.search_messages(text, key)]

    assert await found("привет") == [ru]
    assert await found("Прив") == [ru]
    assert await found("ПРИВЕТ") == [ru]
    assert await found("дела") == [ru]
    assert await found("ёлка") == [ru]
    assert await found("hello wor") == [en]
    assert await found("WORLD") == [en]
    assert await found("llo wo") == [en]
    assert await found(tag) == [en, ru]  # newest first
    assert await found(tag.upper()) == [en, ru]
    assert await found("hello  world") == []
    assert await found("goodbye") == []


async def test_like_wildcards_in_the_query_are_literal(user):
    alice = await user()
    key = await alice.create_dialog("wildcards")
    percent = await alice.send_message(key, "sale: 50% off today")
    plain = await alice.send_message(key, "500 offers")
    under = await alice.send_message(key, "file_name.txt")
    await alice.send_message(key, "fileXname.txt")
    slash = await alice.send_message(key, r"path C:\temp\x")

    async def found(text: str) -> list[str]:
        return [h.key for h in await alice.search_messages(text, key)]

    assert await found("50%") == [percent]
    assert await found("%%") == []
    assert await found("off") == [plain, percent]
    assert await found("e_n") == [under]
    assert await found("__") == []
    assert await found("\\temp") == [slash]
    assert await found("'; drop table messages; --") == []


async def test_everywhere_finds_my_dialogs_by_message_or_name(user):
    alice, bob, outsider = await user(), await user(), await user()
    tag = word()
    by_text = await alice.create_dialog("plain name", members=[bob.user_id])
    by_name = await alice.create_dialog(f"Клуб {tag}", members=[bob.user_id])
    not_mine = await outsider.create_dialog("secret", private=True)
    other = await alice.create_dialog("nothing here", members=[bob.user_id])
    await bob.send_message(by_text, f"see {tag} tomorrow")
    await outsider.send_message(not_mine, f"{tag} is private")
    await alice.send_message(other, "unrelated")

    found = await bob.search_dialogs(tag)
    assert found.dialogs == (by_text, by_name)  # most recent activity first
    assert found.public == ()
    assert (await bob.search_dialogs(tag.upper(), take=1)).dialogs == (by_text,)
    assert (await bob.search_dialogs(tag, take=1, skip=1)).dialogs == (by_name,)
    assert (await outsider.search_dialogs(tag)).dialogs == (not_mine,)

    answer = await bob.call("Search", {"operation": "everyWhere", "search": tag, "takedialogs": 50, "skipdialogs": 0})
    assert answer == {
        "Status": {"code": 200, "message": "Dialogs found"},
        "Dialogs": [by_text, by_name],
        "PublicDialogs": [],
    }


async def test_public_dialogs_are_found_by_name_private_never(user):
    alice, bob = await user(), await user()
    tag = word()
    photo = await alice.upload_media(b"\x89PNG\r\n\x1a\nclub", "png")
    public = await alice.create_dialog(f"Open {tag} club", private=False, photo=photo)
    await alice.create_dialog(f"Closed {tag} club", private=True)
    await alice.send_message(public, f"{tag} inside")

    found = await bob.search_dialogs(tag)
    assert found.dialogs == ()
    assert [(d.key, d.name, d.photo) for d in found.public] == [(public, f"Open {tag} club", photo)]
    # Finding it is not reading it; joining is.
    await refused(404, bob.search_messages(tag, public), "^dialog not found$")
    await bob.join(public)
    found = await bob.search_dialogs(tag)
    assert found.dialogs == (public,) and found.public == ()
    assert len(await bob.search_messages(tag, public)) == 1
    # Making it private hides it from strangers' searches.
    await alice.change_dialog(public, private=False)
    carol = await user()
    assert len((await carol.search_dialogs(tag)).public) == 1
    await alice.change_dialog(public, private=True)
    assert (await carol.search_dialogs(tag)).public == ()


async def test_in_dialogs_members_only_and_paged(user):
    alice, bob, carol = await user(), await user(), await user()
    tag = word()
    shared = await alice.create_dialog("shared", members=[bob.user_id])
    alices = await alice.create_dialog("alice only")
    carols = await carol.create_dialog("carol's")
    hits = [await alice.send_message(shared, f"{tag} number {i}") for i in range(5)]
    await alice.send_message(alices, f"{tag} private note")
    await carol.send_message(carols, f"{tag} from carol")

    # Dialogs of others are left out as if they did not exist...
    found = await bob.search_messages(tag, [shared, alices, carols, "no-such-dialog"])
    assert [(h.key, h.dialog) for h in found] == [(k, shared) for k in reversed(hits)]
    # ...and when none is mine the answer is 404.
    await refused(404, bob.search_messages(tag, [alices, carols]), "^dialog not found$")
    assert [h.key for h in await bob.search_messages(tag, shared, take=2, skip=1)] == [hits[3], hits[2]]

    answer = await bob.call("Search", {"operation": "inDialogs", "dialogs": shared, "search": tag, "take": 50, "skip": 0})
    assert answer["Status"] == {"code": 200, "message": "Messages found"}
    assert answer["Messages"] == list(reversed(hits))
    assert answer["Hits"] == [{"msgKey": k, "pkDialog": shared} for k in reversed(hits)]


async def test_hidden_and_deleted_never_match(user):
    alice, bob = await user(), await user()
    tag = word()
    key = await alice.create_dialog("cleanup", members=[bob.user_id])
    kept = await alice.send_message(key, f"{tag} kept")
    hidden = await alice.send_message(key, f"{tag} hidden by bob")
    deleted = await alice.send_message(key, f"{tag} deleted")
    edited = await alice.send_message(key, f"{tag} before edit")
    await bob.hide_message(key, hidden)
    await alice.delete_message(key, deleted)
    await alice.edit_message(key, edited, "changed completely")

    assert [h.key for h in await bob.search_messages(tag, key)] == [kept]
    assert [h.key for h in await alice.search_messages(tag, key)] == [hidden, kept]
    assert [h.key for h in await alice.search_messages("changed compl", key)] == [edited]
    assert await alice.search_messages("deleted", key) == []


async def test_kicked_member_loses_search(user):
    alice, bob = await user(), await user()
    tag = word()
    key = await alice.create_dialog("kick", members=[bob.user_id])
    await alice.send_message(key, f"{tag} before the kick")
    assert (await bob.search_dialogs(tag)).dialogs == (key,)
    await alice.kick(key, bob.user_id)
    assert (await bob.search_dialogs(tag)).dialogs == ()
    await refused(404, bob.search_messages(tag, key), "^dialog not found$")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"operation": "everyWhere", "search": "a"}, {"code": 422, "message": "search: at least 2 characters"}),
        ({"operation": "everyWhere", "search": "  a  "}, {"code": 422, "message": "search: at least 2 characters"}),
        ({"operation": "everyWhere", "search": "x" * 257}, {"code": 422, "message": "search: longer than 256 characters"}),
        ({"operation": "everyWhere"}, {"code": 400, "message": "search: field is required"}),
        ({"operation": "everyWhere", "search": "ab", "takedialogs": 0}, {"code": 422, "message": "takedialogs: must be at least 1"}),
        ({"operation": "everyWhere", "search": "ab", "skipdialogs": -1}, {"code": 422, "message": "skipdialogs: must be at least 0"}),
        ({"operation": "inDialogs", "search": "ab"}, {"code": 400, "message": "dialogs: field is required"}),
        ({"operation": "inDialogs", "search": "ab", "dialogs": "k", "take": 101}, {"code": 422, "message": "take: must be at most 100"}),
        ({"operation": "inDialogs", "search": "ab", "dialogs": [1, 2]}, {"code": 400, "message": "dialogs: must be a list of non-empty strings"}),
        ({"operation": "somewhere", "search": "ab"}, {"code": 422, "message": "operation: must be one of everyWhere, inDialogs"}),
        ({"search": "ab"}, {"code": 400, "message": "operation: field is required"}),
    ],
)
async def test_search_refuses_bad_requests(user, body, status):
    alice = await user()
    answer = await alice.call("Search", body)
    assert answer["Status"] == status
