"""Logins and emails are unique and looked up by their identity key (NFKC,
case folding): a server started on a database of an older schema gives its
existing accounts their keys (migration 0014), after which every Unicode
spelling of an address names its account."""

from __future__ import annotations

import asyncpg
from argon2 import PasswordHasher

from storage.migrate import available

from .conftest import unique

PASSWORD = "correct horse battery"
OTHER_PASSWORD = "another long password"


def full_width(text: str) -> str:
    return "".join(chr(ord(ch) + 0xFEE0) if ch.isascii() and ch.isalnum() else ch for ch in text)


async def schema_before_identity_keys(url: str) -> asyncpg.Connection:
    """A database as the server left it before migration 0014."""
    conn = await asyncpg.connect(url)
    await conn.execute("CREATE TABLE schema_version (version integer PRIMARY KEY, name text NOT NULL,"
                       " applied_at timestamptz NOT NULL DEFAULT now())")
    for migration in available():
        if migration.version < 14:
            await conn.execute(migration.path.read_text(encoding="utf-8"))
            await conn.execute("INSERT INTO schema_version (version, name) VALUES ($1, $2)",
                               migration.version, migration.name)
    return conn


async def test_existing_accounts_are_found_by_every_spelling_after_the_upgrade(new_database, start_server, connect):
    url = new_database()
    conn = await schema_before_identity_keys(url)
    tag = unique("")
    hasher = PasswordHasher()
    try:
        insert = "INSERT INTO users (login, email, nickname, password_hash) VALUES ($1, $2, $1, $3) RETURNING id"
        plain = await conn.fetchval(insert, f"Plain{tag}", f"Plain{tag}@Example.org", hasher.hash(PASSWORD))
        # Told apart by lower(), one key by case folding (ß is ss): the older keeps it.
        older = await conn.fetchval(insert, f"older{tag}", f"strasse{tag}@example.org", hasher.hash(PASSWORD))
        newer = await conn.fetchval(insert, f"newer{tag}", f"straße{tag}@example.org", hasher.hash(OTHER_PASSWORD))
    finally:
        await conn.close()

    server = start_server(database_url=url)
    c = await connect(target=server)
    for spelling in (f"plain{tag}@example.org", full_width(f"PLAIN{tag}@example.org"), full_width(f"plain{tag}")):
        assert (await c.login(spelling, PASSWORD)).user_id == plain, spelling
    assert (await c.login(f"STRASSE{tag}@example.org", PASSWORD)).user_id == older
    assert (await c.login(f"straße{tag}@example.org", PASSWORD)).user_id == older
    # The newer account is still reachable, by its login.
    assert (await c.login(f"NEWER{tag}", OTHER_PASSWORD)).user_id == newer
    assert any(f"user {newer} shares its email" in line for line in server.log), server.log[-20:]
    # New registrations are checked by key.
    fresh = await connect(target=server)
    answer = await fresh.call("Registration", {
        "login": {"login": unique("k")}, "password": {"password": PASSWORD},
        "email": {"email": full_width(f"plain{tag}@example.org")}, "sessia": fresh._login_sessia()})
    assert answer["Status"] == {"code": 409, "message": "email is already registered"}
