"""The authorization matrix: every request that needs a session, against every
kind of caller who may not do it, with the documented Status.

A caller outside a dialog learns nothing: each refusal is compared with the
answer for a key that does not exist, and must be identical.
"""

from __future__ import annotations

import secrets
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import client_sdk
from protocol.requests import AUTH, ORIGINAL_REQUESTS, REGISTRATION

from .support import TEST_CLIENT

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
SECRET = "the secret plan"
SESSION_REQUESTS = tuple(n for n in ORIGINAL_REQUESTS if n not in (REGISTRATION,)) + (
    "Subscribe", "Unsubscribe", "GetEvents",
)


@dataclass
class Scene:
    alice: client_sdk.Client  # owner of the dialog
    bob: client_sdk.Client  # a member
    kicked: client_sdk.Client  # was a member when the message was sent, then removed
    stranger: client_sdk.Client  # never a member
    dialog: str
    msgkey: str
    media: str  # attached to the message
    private_media: str  # Alice's upload, attached nowhere


@pytest.fixture
async def scene(user) -> Scene:
    alice, bob, kicked, stranger = [await user() for _ in range(4)]
    dialog = await alice.create_dialog("plans", members=[bob.user_id, kicked.user_id])
    media = await alice.upload_media(PNG, "png")
    private_media = await alice.upload_media(b"diary", "txt")
    msgkey = await alice.send_message(dialog, SECRET, media=[media])
    await alice.kick(dialog, kicked.user_id)
    return Scene(alice, bob, kicked, stranger, dialog, msgkey, media, private_media)


def unknown_key() -> str:
    return secrets.token_hex(16)


#: (label, request, body from (dialog key, message key, media key, scene)) for a non-member.
DialogRequest = tuple[str, str, Callable[[str, str, str, Scene], dict[str, Any]]]
NON_MEMBER_REQUESTS: list[DialogRequest] = [
    ("members", "GetUsersDialog", lambda d, m, f, s: {"pkDialog": d}),
    ("history", "GetMessages", lambda d, m, f, s: {"pkDialog": d, "date": "-1", "take": 50, "skip": 0}),
    ("one message", "GetMessages", lambda d, m, f, s: {"pkDialog": d, "msgkey": m}),
    ("tombstones", "GetDelMessages", lambda d, m, f, s: {"pkDialog": d, "date": "-1", "take": 50, "skip": 0}),
    ("send", "SendMessage", lambda d, m, f, s: {"operation": "add",
                                                 "message": {"infoMessage": {"pkDialog": d, "content": "hi"}}}),
    ("edit", "SendMessage", lambda d, m, f, s: {"operation": "edit", "message": {
        "infoMessage": {"pkDialog": d, "msgkey": m, "content": "mine now"}}}),
    ("delete", "SendMessage", lambda d, m, f, s: {"operation": "delete",
                                                   "message": {"infoMessage": {"pkDialog": d, "msgkey": m}}}),
    ("hide", "SendMessage", lambda d, m, f, s: {"operation": "deleteOnlyMe",
                                                 "message": {"infoMessage": {"pkDialog": d, "msgkey": m}}}),
    ("kick", "KickUser", lambda d, m, f, s: {"PkDialog": d, "user": s.bob.user_id}),
    ("rename", "ChangeDialog", lambda d, m, f, s: {"dialog": {"pkDialog": d, "name": "mine"}}),
    ("join private", "ChangeDialog", lambda d, m, f, s: {"dialog": {"pkDialog": d, "IdUsers": [s.stranger.user_id]}}),
    ("dialog media", "GetMedia", lambda d, m, f, s: {"PkDialog": d, "take": 10, "skip": 0}),
    ("attached file", "GetMedia", lambda d, m, f, s: {"hash": f}),
    ("search in it", "Search", lambda d, m, f, s: {"operation": "inDialogs", "dialogs": [d], "search": "secret"}),
]


@pytest.mark.parametrize("who", ["stranger", "kicked"])
async def test_non_members_get_the_same_404_as_for_a_key_that_does_not_exist(scene, who):
    caller: client_sdk.Client = getattr(scene, who)
    wrong = []
    for label, name, body in NON_MEMBER_REQUESTS:
        if label == "join private":  # the caller asks to add themselves
            body = lambda d, m, f, s: {"dialog": {"pkDialog": d, "IdUsers": [caller.user_id]}}  # noqa: E731
        real = await caller.call(name, body(scene.dialog, scene.msgkey, scene.media, scene))
        fake = await caller.call(name, body(unknown_key(), unknown_key(), unknown_key(), scene))
        expected = "media not found" if label == "attached file" else "dialog not found"
        # not one byte more for a dialog that exists than for one that does not
        if real != {"Status": {"code": 404, "message": expected}} or real != fake:
            wrong.append((label, real, fake))
    assert wrong == []


async def test_the_refused_requests_changed_nothing(scene):
    for who in ("stranger", "kicked"):
        caller = getattr(scene, who)
        for _, name, body in NON_MEMBER_REQUESTS:
            await caller.call(name, body(scene.dialog, scene.msgkey, scene.media, scene))
    [message] = await scene.alice.messages(scene.dialog)
    assert (message.key, message.content, message.media) == (scene.msgkey, SECRET, (scene.media,))
    assert sorted(await scene.alice.dialog_members(scene.dialog)) == sorted([scene.alice.user_id, scene.bob.user_id])
    assert [d.key for d in await scene.alice.dialogs()] == [scene.dialog]


async def test_non_members_do_not_see_the_dialog_in_listings_or_search(scene):
    for caller in (scene.stranger, scene.kicked):
        assert scene.dialog not in [d.key for d in await caller.dialogs()]
        found = await caller.call("Search", {"operation": "everyWhere", "search": "secret plan"})
        assert found["Status"]["code"] == 200
        assert scene.dialog not in str(found)


async def test_someone_elses_private_upload_is_404_like_an_unknown_key(scene):
    real = await scene.bob.call("GetMedia", {"hash": scene.private_media})
    fake = await scene.bob.call("GetMedia", {"hash": unknown_key()})
    assert real == fake == {"Status": {"code": 404, "message": "media not found"}}



#: Every request that takes a media key: the body for key ``k`` in a dialog ``d`` the caller owns.
MEDIA_KEY_REQUESTS: list[tuple[str, Callable[[str, str], dict[str, Any]]]] = [
    ("GetMedia", lambda k, d: {"hash": k}),
    ("ChangeUser", lambda k, d: {"imagekey": k}),
    ("CreateDialog", lambda k, d: {"dialog": {"name": "with a photo", "private": True, "idUsers": [], "photo": k}}),
    ("ChangeDialog", lambda k, d: {"dialog": {"pkDialog": d, "photo": k}}),
    ("SendMessage", lambda k, d: {"operation": "add",
                                  "message": {"infoMessage": {"pkDialog": d, "content": "x"}, "hash": [k]}}),
]


@pytest.mark.parametrize("name,body", MEDIA_KEY_REQUESTS, ids=[n for n, _ in MEDIA_KEY_REQUESTS])
async def test_no_request_tells_a_foreign_private_upload_from_an_unknown_key(scene, name, body):
    """One rule everywhere: a key the caller may not download is answered
    as a key that does not exist, whatever the request."""
    fake = unknown_key()
    own = await scene.bob.create_dialog("bob's own")
    real = await scene.bob.call(name, body(scene.private_media, own))
    unknown = await scene.bob.call(name, body(fake, own))
    assert real["Status"]["code"] == 404, real
    assert real["Status"]["message"].replace(scene.private_media, "KEY") == unknown["Status"]["message"].replace(
        fake, "KEY"
    )


# -- a member, but not allowed ---------------------------------------------------------------


MEMBER_REFUSALS = [
    ("edit another's message", "SendMessage",
     lambda s: {"operation": "edit", "message": {"infoMessage": {"pkDialog": s.dialog, "msgkey": s.msgkey,
                                                                 "content": "forged"}}},
     403, "only the author can edit a message"),
    ("delete another's message for everyone", "SendMessage",
     lambda s: {"operation": "delete", "message": {"infoMessage": {"pkDialog": s.dialog, "msgkey": s.msgkey}}},
     403, "only the author, the owner or an admin can delete a message for everyone"),
    ("rename", "ChangeDialog", lambda s: {"dialog": {"pkDialog": s.dialog, "name": "mine"}},
     403, "only the owner or an admin can change this dialog"),
    ("appoint an admin", "ChangeDialog", lambda s: {"dialog": {"pkDialog": s.dialog, "admins": [s.bob.user_id]}},
     403, "only the owner or an admin can change this dialog"),
    ("remove the owner", "KickUser", lambda s: {"PkDialog": s.dialog, "user": s.alice.user_id},
     403, "only the owner or an admin can remove members"),
]


async def test_a_plain_member_is_refused_what_needs_a_role(scene):
    wrong = []
    for label, name, body, code, message in MEMBER_REFUSALS:
        answer = await scene.bob.call(name, body(scene))
        if answer["Status"] != {"code": code, "message": message}:
            wrong.append((label, answer))
    assert wrong == []
    [kept] = await scene.alice.messages(scene.dialog)
    assert kept.content == SECRET
    assert (await scene.alice.dialog_roles(scene.dialog)) is not None
    assert scene.alice.user_id in await scene.bob.dialog_members(scene.dialog)


# -- blocked users ----------------------------------------------------------------------------


async def test_a_blocked_user_cannot_reach_the_blocker(user):
    alice, eve = await user(), await user()
    direct = await eve.create_dialog("", members=[alice.user_id])
    await alice.block(eve.user_id)
    answer = await eve.call("SendMessage", {"operation": "add",
                                            "message": {"infoMessage": {"pkDialog": direct, "content": "hi"}}})
    assert answer["Status"] == {"code": 403, "message": "cannot send: one of you has blocked the other"}
    answer = await eve.call("RequestFrBl", {"operation": "append", "id": alice.user_id, "description": "hi"})
    assert answer["Status"] == {"code": 403, "message": "you cannot send a request to this user"}
    answer = await eve.call("CreateDialog", {"dialog": {"name": "again", "idUsers": [alice.user_id]}})
    assert answer["Status"] == {
        "code": 403, "message": f"cannot start a dialog with user {alice.user_id}: one of you has blocked the other"
    }
    assert await alice.messages(direct) == []


# -- callers without a valid session: every request ---------------------------------------------


def _body_for(name: str) -> dict[str, Any]:
    """A body that would be valid but for the session (the session is checked first)."""
    return {"pkDialog": unknown_key(), "id": 1, "operation": "getFriend", "search": "abc", "hash": unknown_key()}


async def _sessia_variants(user, connect) -> dict[str, tuple[dict[str, Any], str]]:
    """Each kind of caller: the sessia it sends and the 401 message it gets."""
    alice = await user()
    token = alice.token
    good = alice.sessia()
    gone = await user()
    dead = gone.sessia()
    await gone.logout()
    return {
        "logged out": (dead, "invalid or revoked token"),
        "other device's token": ({**good, "device": {"deviceid": secrets.token_hex(8)}},
                                 "token was issued to another device"),
        "unknown client build": ({**good, "client": {"nameclient": "evil", "hashcert": "f" * 32, "version": 9}},
                                 "unknown client build 'evil': unverified client"),
        "outdated client build": ({**good, "client": {**TEST_CLIENT, "version": 1}},
                                  f"client '{TEST_CLIENT['nameclient']}' is older than the minimum version 2"),
        "no client": ({"tocken": token, "device": good["device"]}, "sessia.client is required: unverified client"),
        "forged token": ({**good, "tocken": "0" * 64 + f"?{alice.user_id}"}, "invalid or revoked token"),
    }


async def test_every_session_request_refuses_every_invalid_caller_with_401(user, connect):
    variants = await _sessia_variants(user, connect)
    probe = await connect()
    refusals = {}
    for kind, (sessia, message) in variants.items():
        for name in SESSION_REQUESTS:
            answer = await probe.call(name, {**_body_for(name), "sessia": sessia})
            refusals[(kind, name)] = answer["Status"]
            assert answer["Status"] == {"code": 401, "message": message}, (kind, name, answer)
    assert len(refusals) == len(variants) * len(SESSION_REQUESTS)


async def test_auth_by_token_is_the_same_check(user, connect):
    variants = await _sessia_variants(user, connect)
    probe = await connect()
    for _kind, (sessia, message) in variants.items():
        answer = await probe.call(AUTH, {"sessia": sessia})
        assert answer == {"Status": {"code": 401, "message": message}}


# -- what timing tells -----------------------------------------------------------------------


async def test_unknown_email_and_wrong_password_take_the_same_time(user, connect):
    """Auth verifies a dummy argon2 hash when the account does not exist, so the
    time of a refusal does not tell whether an email is registered.  Without it
    an unknown email would answer in ~1 ms against ~50 ms for a real hash check."""
    alice = await user()
    probe = await connect()

    async def timed(email: str) -> float:
        started = time.perf_counter()
        answer = await probe.call(AUTH, {"email": email, "password": "wrong password", "sessia": probe._login_sessia()})
        elapsed = time.perf_counter() - started
        assert answer["Status"] == {"code": 401, "message": "wrong email or password"}
        return elapsed

    await timed(f"warm-up-{secrets.token_hex(4)}@example.org")
    unknown, wrong = [], []
    for _ in range(5):  # interleaved, so a load spike hits both
        unknown.append(await timed(f"nobody-{secrets.token_hex(6)}@example.org"))
        wrong.append(await timed(alice.email))
    ratio = statistics.median(unknown) / statistics.median(wrong)
    assert 1 / 3 < ratio < 3, (unknown, wrong)
