"""Logins and emails get their identity key (``users.identity_key``), stored
and unique, so that Unicode variants of one text name one account.

The key is computed by the server's own rule, which SQL cannot repeat exactly
(Python's case folding is not the database's ``lower()``), hence a Python
migration.  Two existing accounts whose texts fold to the same key (possible
only for texts the old ``lower()`` rule told apart, such as ``ß`` and ``ss``)
cannot both keep it: the older account keeps it, the newer one gets none and
is found by its other identifier (its login, or its email if the login is the
one shared) until it confirms a new email.  The migration logs their ids.
"""

from __future__ import annotations

import logging

import asyncpg

from storage.users import identity_key

log = logging.getLogger("sessia.migrate")


async def apply(conn: asyncpg.Connection) -> None:
    await conn.execute("ALTER TABLE users ADD COLUMN login_key text, ADD COLUMN email_key text")
    logins: set[str] = set()
    emails: set[str] = set()
    updates: list[tuple[int, str | None, str | None]] = []
    for row in await conn.fetch("SELECT id, login, email FROM users ORDER BY id"):
        login_key = _first(identity_key(row["login"]), logins)
        email_key = _first(identity_key(row["email"]), emails)
        if login_key is None or email_key is None:
            log.warning("user %d shares its %s with an older account after normalization: it keeps no key for it",
                        row["id"], "login" if login_key is None else "email")
        updates.append((row["id"], login_key, email_key))
    await conn.executemany("UPDATE users SET login_key = $2, email_key = $3 WHERE id = $1", updates)
    await conn.execute("CREATE UNIQUE INDEX users_login_key ON users (login_key)")
    await conn.execute("CREATE UNIQUE INDEX users_email_key ON users (email_key)")


def _first(key: str, seen: set[str]) -> str | None:
    """``key`` if no older account took it, else None."""
    if key in seen:
        return None
    seen.add(key)
    return key
