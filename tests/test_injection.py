"""Injection: SQL in every text field that reaches SQL, path traversal in media
names and keys, oversized base64.  Every attempt is either refused with a
deliberate Status or stored and returned literally, and afterwards the
database is intact (same tables, nobody's rows gone, an unrelated account
still works)."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import asyncpg
import pytest

from client_sdk.errors import SessiaError
from protocol.codecs import Codec

from .conftest import unique
from .support import database_url

PASSWORD = "correct horse battery"

SQL = [
    "' OR '1'='1",
    "' OR 1=1 --",
    "'; DROP TABLE users; --",
    '"; DROP TABLE messages; --',
    "1; DELETE FROM sessions",
    "' UNION SELECT password_hash FROM users --",
    "'); TRUNCATE dialogs CASCADE; --",
    "$1 $2",
    "\\'; SELECT pg_sleep(5); --",
    "%' OR content LIKE '%",
    "%",
    "_",
    "\\",
]
TRAVERSAL = ["../../etc/passwd", "..", "/etc/passwd", "png/../../x", "..\\..\\boot.ini", "%2e%2e%2f", "png\x00.sh"]


async def snapshot(server) -> dict[str, int]:
    """Every table of the schema with its row count."""
    conn = await asyncpg.connect(database_url(server))
    try:
        tables = [r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return {t: await conn.fetchval(f'SELECT count(*) FROM "{t}"') for t in tables}
    finally:
        await conn.close()


@pytest.fixture
async def canary(user):
    """An unrelated account with a message: it must come through every attack unharmed."""
    c = await user()
    dialog = await c.create_dialog("canary")
    await c.send_message(dialog, "still here")
    return c, dialog


async def assert_intact(server, before: dict[str, int], canary, connect) -> None:
    after = await snapshot(server)
    assert set(after) == set(before), "a table disappeared or appeared"
    # Tables whose rows expire on their own: codes, and rate-limit budgets
    # that are whole again (removed by a periodic pass).
    expiring = ("email_codes", "rate_limits")
    shrunk = {t: (before[t], after[t]) for t in before if after[t] < before[t] and t not in expiring}
    assert shrunk == {}, f"rows disappeared: {shrunk}"
    c, dialog = canary
    assert [m.content for m in await c.messages(dialog)] == ["still here"]
    again = await connect()
    assert (await again.login(c.email, PASSWORD)).user_id == c.user_id


async def test_sql_in_login_fields_is_refused_harmlessly(server, connect, canary):
    before = await snapshot(server)
    c = await connect()
    for i, text in enumerate(SQL):
        # as the login / email of a new account: refused by validation
        answer = await c.call("Registration", {"login": {"login": text}, "password": {"password": PASSWORD},
                                               "email": {"email": f"{unique()}@example.org"},
                                               "sessia": c._login_sessia()})
        assert answer["Status"]["code"] == 422, (text, answer)
        answer = await c.call("Registration", {"login": {"login": unique()}, "password": {"password": PASSWORD},
                                               "email": {"email": text}, "sessia": c._login_sessia()})
        assert answer["Status"]["code"] == 422, (text, answer)
        # as the email (or login) and as the password of Auth: nobody is logged in
        # (the canary's own password is tried only a few times: more would hit
        # the per-account login limit, 10 per 5 minutes, which tests/test_limits.py covers)
        tries = [(text, PASSWORD), (text, text)] + ([(canary[0].email, text)] if i < 5 else [])
        for email, password in tries:
            answer = await c.call("Auth", {"email": email, "password": password, "sessia": c._login_sessia()})
            assert answer["Status"] == {"code": 401, "message": "wrong email or password"}, (text, answer)
    await assert_intact(server, before, canary, connect)


async def test_an_email_with_a_quote_is_stored_literally(user, connect):
    c = await connect()
    login = unique()
    email = f"o'brien.{login}@example.org"
    answer = await c.call("Registration", {"login": {"login": login}, "password": {"password": PASSWORD},
                                           "email": {"email": email}, "sessia": c._login_sessia()})
    if answer["Status"]["code"] == 422:
        pytest.fail(f"a valid address with an apostrophe was refused: {answer}")
    again = await connect()
    assert (await again.login(email, PASSWORD)).user_id == answer["Id"]
    third = await connect()
    with pytest.raises(SessiaError):
        await third.login(f"o'brien.{login}@example.org' OR '1'='1", PASSWORD)


async def test_sql_in_stored_text_comes_back_literally(server, user, connect, canary):
    before = await snapshot(server)
    alice, bob = await user(), await user()
    for text in SQL:
        await alice.change_user(nickname=text)
        assert (await bob.get_user(alice.user_id)).nickname == text.strip()
        dialog = await alice.create_dialog(text, members=[bob.user_id])
        assert {d.key: d.name for d in await bob.dialogs()}[dialog] == text
        msgkey = await alice.send_message(dialog, f"<{text}>")
        assert (await bob.message(dialog, msgkey)).content == f"<{text}>"
        await alice.edit_message(dialog, msgkey, f"[{text}]")
        assert (await bob.message(dialog, msgkey)).content == f"[{text}]"
    await alice.send_friend_request(bob.user_id, SQL[2])
    assert [c.note for c in await alice.outgoing_requests()] == [SQL[2]]
    await assert_intact(server, before, canary, connect)


async def test_search_text_is_matched_literally(user):
    alice = await user()
    tag = secrets.token_hex(4)
    dialog = await alice.create_dialog("search")
    literal = await alice.send_message(dialog, f"{tag} 50% off_now \\o/ ' OR 1=1")
    other = await alice.send_message(dialog, f"{tag} 500 offers and nothing else")
    hits = lambda text: alice.search_messages(text, dialog)  # noqa: E731
    assert [h.key for h in await hits("50%")] == [literal]
    assert [h.key for h in await hits("f_n")] == [literal]
    assert [h.key for h in await hits("\\o/")] == [literal]
    assert [h.key for h in await hits("' OR 1=1")] == [literal]
    assert [h.key for h in await hits("%' OR content LIKE '%")] == []
    assert {h.key for h in await hits(tag)} == {literal, other}
    for text in SQL:
        answer = await alice.call("Search", {"operation": "everyWhere", "search": text})
        assert answer["Status"]["code"] in (200, 422), answer  # 422: shorter than 2 characters


async def test_sql_and_traversal_in_keys_find_nothing(server, user, connect, canary):
    before = await snapshot(server)
    alice = await user()
    dialog = await alice.create_dialog("keys")
    for text in SQL + TRAVERSAL:
        checks = [
            ("GetMessages", {"pkDialog": text, "date": "-1"}, {404}),
            ("GetMessages", {"pkDialog": dialog, "msgkey": text}, {404, 422}),
            ("GetUsersDialog", {"pkDialog": text}, {404}),
            ("KickUser", {"PkDialog": text, "user": alice.user_id}, {404}),
            ("ChangeDialog", {"dialog": {"pkDialog": text, "name": "x"}}, {404}),
            ("SendMessage", {"operation": "add", "message": {"infoMessage": {"pkDialog": text, "content": "x"}}},
             {404}),
            ("SendMessage", {"operation": "add", "message": {"infoMessage": {"pkDialog": dialog, "content": "x",
                                                                            "msgkey": text}}}, {422}),
            ("SendMessage", {"operation": "add", "message": {"infoMessage": {"pkDialog": dialog, "content": "x"},
                                                             "hash": [text], "order": [1]}}, {404, 422}),
            ("GetMedia", {"hash": text}, {404}),
            ("GetMedia", {"PkDialog": text}, {404}),
            ("ChangeUser", {"imagekey": text}, {404}),
            ("CreateDialog", {"dialog": {"name": "x", "photo": text}}, {404, 422}),
            ("Search", {"operation": "inDialogs", "dialogs": [text], "search": "abc"}, {404}),
            ("GetUser", {"id": text}, {400}),
            ("RequestFrBl", {"operation": text, "id": 1}, {400}),
        ]
        for name, body, codes in checks:
            answer = await alice.call(name, body)
            if "\x00" in text:
                codes = codes | {422}  # "must not contain NUL characters"
            assert answer["Status"]["code"] in codes, (name, text, answer)
    assert await alice.messages(dialog) == []
    await assert_intact(server, before, canary, connect)


async def test_traversal_in_media_extensions_is_refused_and_writes_nothing_outside(server, user):
    alice = await user()
    media_dir = Path(server.data_dir) / "media"
    outside_before = {p for p in Path(server.data_dir).rglob("*") if media_dir not in p.parents and p != media_dir}
    for ext in TRAVERSAL + ["png/..", ".png", "tar.gz", "PNG.exe", "php"]:
        answer = await alice.call("Media", {"extension": ext, "bytes": b"#!/bin/sh\necho owned\n"})
        assert answer["Status"]["code"] == 422, (ext, answer)
        assert answer["Status"]["message"].startswith("extension:")
    outside_after = {p for p in Path(server.data_dir).rglob("*") if media_dir not in p.parents and p != media_dir}
    assert outside_after - outside_before <= {p for p in outside_after if "outbox" in p.parts}
    assert not [p for p in Path(server.data_dir).rglob("*") if p.name in ("passwd", "boot.ini", "x")]


async def test_oversized_and_broken_base64_uploads(server, user):
    alice = await user()
    limit = 20 * (1 << 20)  # --max-media-size
    too_big = base64.b64encode(b"\x00" * (limit + 3)).decode()
    answer = await alice.call("Media", {"extension": "txt", "bytes": too_big}, codec=Codec.JSON)
    assert answer["Status"] == {"code": 413, "message": f"bytes: larger than {limit} bytes"}
    for broken in ("not base64!", "====", "QQ", "Q" * 1001, "QUJD\x00"):
        answer = await alice.call("Media", {"extension": "txt", "bytes": broken}, codec=Codec.JSON)
        assert answer["Status"] == {"code": 400, "message": "bytes: not valid base64"}, (broken, answer)
    # base64 where the server expects media keys or text is only text
    text = base64.b64encode(b"'; DROP TABLE users; --").decode()
    answer = await alice.call("ChangeUser", {"nickname": text})
    assert answer["Status"]["code"] == 200
    assert (await alice.get_user(alice.user_id)).nickname == text
