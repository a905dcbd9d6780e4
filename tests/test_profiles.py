"""Profiles end to end: GetUser and ChangeUser (nickname, password, photo, email)."""

from __future__ import annotations

import pytest

from client_sdk import (
    BadRequest,
    Codec,
    Conflict,
    Forbidden,
    NotFound,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    Unprocessable,
    UserItem,
)

from .conftest import unique
from .support import code_from, free_port

PASSWORD = "correct horse battery"
NEW_PASSWORD = "staple battery horse"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(32)


async def test_get_user_answers_the_public_profile(user):
    alice = await user()
    bob = await user()
    assert await bob.get_user(alice.user_id) == UserItem(id=alice.user_id, nickname=alice.login_name, photo=None)
    # Exactly the original's fields: no email, no login.
    answer = await bob.call("GetUser", {"id": str(alice.user_id)})
    assert answer == {
        "Status": {"code": 200, "message": "user profile"},
        "Id": alice.user_id,
        "Nickname": alice.login_name,
        "Photo": "",
    }


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"id": 2**62}, {"code": 404, "message": "no such user"}),
        ({}, {"code": 400, "message": "id: field is required"}),
        ({"id": "abc"}, {"code": 400, "message": "id: must be an integer"}),
        ({"id": 0}, {"code": 422, "message": "id: must be at least 1"}),
        ({"id": 2**63}, {"code": 422, "message": f"id: must be at most {2**63 - 1}"}),
    ],
)
async def test_get_user_refusals(user, body, status):
    alice = await user()
    assert (await alice.call("GetUser", body))["Status"] == status


async def test_get_user_by_login_finds_a_newcomer_in_any_letter_case(user):
    alice, bob = await user(), await user()
    found = await bob.find_user(alice.login_name.upper())
    assert found == UserItem(id=alice.user_id, nickname=alice.login_name, photo=None)
    # The same answer as by id: the login itself is not given back.
    assert await bob.call("GetUser", {"login": alice.login_name}) == await bob.call("GetUser", {"id": alice.user_id})
    with pytest.raises(NotFound, match="no such user"):
        await bob.find_user(unique("nobody"))


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"id": 1, "login": "someone"}, {"code": 400, "message": "id and login: send one of them"}),
        ({"login": "a b"}, {"code": 422, "message": "login: 3 to 32 letters, digits, '_', '.' or '-'"}),
        ({"login": "x" * 65}, {"code": 422, "message": "login: longer than 64 characters"}),
        ({"login": ["alice"]}, {"code": 400, "message": "login: must be a string"}),
    ],
)
async def test_get_user_by_login_refusals(user, body, status):
    alice = await user()
    assert (await alice.call("GetUser", body))["Status"] == status


async def test_lookups_by_login_spend_the_search_budget(start_server, connect):
    server = start_server("--rate-search", "3/60")
    alice = await connect(target=server)
    login = unique()
    await alice.register(login, f"{login}@example.org", "correct horse battery")
    for _ in range(3):
        await alice.find_user(login)
    with pytest.raises(TooManyRequests):
        await alice.find_user(login)
    assert (await alice.get_user(alice.user_id)).id == alice.user_id  # by id: not a search


async def test_change_nickname(user):
    alice = await user()
    bob = await user()
    assert await alice.change_user(nickname="  Alice in Chains  ") == ["nickname changed"]
    assert (await bob.get_user(alice.user_id)).nickname == "Alice in Chains"
    assert await alice.change_user(nickname="Алиса 🦊") == ["nickname changed"]
    assert (await bob.get_user(alice.user_id)).nickname == "Алиса 🦊"


@pytest.mark.parametrize(
    ("nickname", "message"),
    [
        ("   ", "nickname: must not be empty"),
        ("x" * 65, "nickname: longer than 64 characters"),
        ("two\nlines", "nickname: must not contain control characters"),
    ],
)
async def test_nickname_rules(user, nickname, message):
    alice = await user()
    with pytest.raises(Unprocessable, match=f"^{message}$"):
        await alice.change_user(nickname=nickname)
    assert (await alice.get_user(alice.user_id)).nickname == alice.login_name


async def test_password_change_keeps_this_session_and_ends_the_others(user, connect):
    alice = await user()
    laptop = await connect()
    await laptop.login(alice.email, PASSWORD)
    assert await alice.change_user(old_password=PASSWORD, new_password=NEW_PASSWORD) == ["password changed"]

    assert (await alice.get_user(alice.user_id)).id == alice.user_id
    assert (await laptop.call("GetUser", {"id": alice.user_id}))["Status"] == {
        "code": 401,
        "message": "invalid or revoked token",
    }
    other = await connect()
    with pytest.raises(Unauthorized, match="wrong email or password"):
        await other.login(alice.email, PASSWORD)
    assert (await other.login(alice.email, NEW_PASSWORD)).user_id == alice.user_id


async def test_wrong_old_password_is_403_and_nothing_changes(user, connect):
    alice = await user()
    laptop = await connect()
    await laptop.login(alice.email, PASSWORD)
    with pytest.raises(Forbidden, match="^old password is wrong$"):
        await alice.change_user(nickname="Mallory", old_password="not the password", new_password=NEW_PASSWORD)
    assert (await alice.get_user(alice.user_id)).nickname == alice.login_name
    assert (await laptop.get_user(alice.user_id)).id == alice.user_id  # still logged in
    assert (await (await connect()).login(alice.email, PASSWORD)).user_id == alice.user_id


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"oldPass": PASSWORD}, {"code": 400, "message": "oldPass and newPass must be sent together"}),
        ({"newPass": NEW_PASSWORD}, {"code": 400, "message": "oldPass and newPass must be sent together"}),
        ({"oldPass": PASSWORD, "newPass": "short"}, {"code": 422, "message": "newPass: shorter than 8 characters"}),
        ({"oldPass": PASSWORD, "newPass": PASSWORD}, {"code": 422, "message": "newPass: must differ from oldPass"}),
        ({"oldPass": PASSWORD, "newPass": ["x"]}, {"code": 400, "message": "newPass: must be a string"}),
    ],
)
async def test_password_field_rules(user, body, status):
    alice = await user()
    assert (await alice.call("ChangeUser", body))["Status"] == status


async def test_profile_photo_is_an_own_uploaded_image(user):
    alice = await user()
    bob = await user()
    key = await alice.upload_media(PNG, "png")
    assert await alice.change_user(image_key=key) == ["profile photo changed"]
    assert (await bob.get_user(alice.user_id)).photo == key

    with pytest.raises(NotFound, match="^no such media$"):
        await alice.change_user(image_key="0" * 32)
    bobs = await bob.upload_media(PNG, "png")
    with pytest.raises(NotFound, match="^no such media$"):  # not one Alice may see: as if it did not exist
        await alice.change_user(image_key=bobs)
    # One Alice may see (Bob's profile photo) is still not hers to wear.
    await bob.change_user(image_key=bobs)
    with pytest.raises(Forbidden, match="^imagekey: a profile photo must be your own upload$"):
        await alice.change_user(image_key=bobs)
    text = await alice.upload_media(b"hello", "txt")
    with pytest.raises(Unprocessable, match="^imagekey: not an image"):
        await alice.change_user(image_key=text)
    assert (await bob.get_user(alice.user_id)).photo == key


async def test_changing_email_sends_a_code_and_changes_nothing_until_confirmed(user, connect, smtp):
    alice = await user()
    new = f"{unique()}@example.org"
    before = smtp.count()
    assert await alice.change_user(email=new) == ["confirmation code sent to the new email"]
    code = code_from(await smtp.wait_for(new, after=before))
    other = await connect()
    with pytest.raises(Unauthorized):
        await other.login(new, PASSWORD)
    await alice.confirm_email(code)
    assert (await other.login(new, PASSWORD)).user_id == alice.user_id


@pytest.mark.parametrize(
    ("email", "error", "message"),
    [
        ("not-an-address", Unprocessable, "^email: not a valid email address$"),
        ("taken", Conflict, "^email is already registered$"),
    ],
)
async def test_email_refusals_apply_nothing(user, email, error, message):
    alice = await user()
    bob = await user()
    with pytest.raises(error, match=message):
        await alice.change_user(nickname="Changed", email=bob.email if email == "taken" else email)
    assert (await alice.get_user(alice.user_id)).nickname == alice.login_name


async def test_a_refused_photo_applies_nothing(user, connect):
    alice = await user()
    with pytest.raises(NotFound, match="no such media"):
        await alice.change_user(
            nickname="Changed", old_password=PASSWORD, new_password=NEW_PASSWORD, image_key="f" * 32
        )
    assert (await alice.get_user(alice.user_id)).nickname == alice.login_name
    assert (await (await connect()).login(alice.email, PASSWORD)).user_id == alice.user_id


async def test_everything_at_once(user, connect, smtp):
    alice = await user()
    key = await alice.upload_media(PNG, "png")
    new = f"{unique()}@example.org"
    before = smtp.count()
    messages = await alice.change_user(
        nickname="All New", old_password=PASSWORD, new_password=NEW_PASSWORD, image_key=key, email=new
    )
    assert messages == [
        "nickname changed",
        "password changed",
        "profile photo changed",
        "confirmation code sent to the new email",
    ]
    assert await alice.get_user(alice.user_id) == UserItem(alice.user_id, "All New", key)
    await alice.confirm_email(code_from(await smtp.wait_for(new, after=before)))
    assert (await (await connect()).login(new, NEW_PASSWORD)).user_id == alice.user_id


@pytest.mark.parametrize("body", [{}, {"nickname": "", "email": None, "imagekey": ""}])
async def test_nothing_to_change_is_400(user, body):
    alice = await user()
    assert (await alice.call("ChangeUser", body))["Status"] == {"code": 400, "message": "nothing to change"}


async def test_original_json_body(user):
    """The original's spellings (``imageKey``, ``oldPass``) over JSON, as its clients send them."""
    alice = await user(codec=Codec.JSON)
    key = await alice.upload_media(PNG, "png")
    answer = await alice.call(
        "ChangeUser", {"NickName": "KrTv", "oldPass": PASSWORD, "newPass": NEW_PASSWORD, "imageKey": key}
    )
    assert answer == {
        "Status": {"code": 200, "message": "profile updated"},
        "Messages": ["nickname changed", "password changed", "profile photo changed"],
    }


async def test_mail_failure_during_change_user_applies_nothing(start_server, connect):
    server = start_server("--smtp-url", f"smtp://127.0.0.1:{free_port()}")
    alice = await connect(target=server)
    login = unique()
    await alice.register(login, f"{login}@example.org", PASSWORD)
    with pytest.raises(Unavailable, match="^could not send mail, try again$"):
        await alice.change_user(
            nickname="Changed", old_password=PASSWORD, new_password=NEW_PASSWORD, email=f"{unique()}@example.org"
        )
    assert (await alice.get_user(alice.user_id)).nickname == login
    assert (await (await connect(target=server)).login(login, PASSWORD)).user_id == alice.user_id


async def test_profiles_need_a_session(connect):
    c = await connect()
    for name in ("GetUser", "ChangeUser"):
        assert (await c.call(name, {"id": 1, "nickname": "x"}))["Status"] == {
            "code": 400,
            "message": "sessia: field is required",
        }
    with pytest.raises(BadRequest):
        await c.request("GetUser", {"id": 1}, needs_session=False)
