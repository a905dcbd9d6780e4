"""Users: accounts, credentials and public profile fields.

A login and an email are unique, and looked up, by their *identity key*
(``identity_key``): Unicode variants of one text (letter case, full-width
letters, ligatures) name one account.  The key is stored beside the text as
typed (``login_key``, ``email_key``, unique), and computed here, not by the
database, so that the rule is the same whatever the database's collation and
the server can key its per-account rate limits on exactly the text that
would name an account.  The older case-insensitive indexes (``lower()``, by
the database's collation) stay: a text either of the two rules calls equal to
a registered one is refused as taken.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from .db import Database
from .errors import IdentityTaken


@dataclass(frozen=True, slots=True)
class User:
    id: int
    login: str
    email: str
    email_confirmed: bool
    nickname: str
    password_hash: str
    photo_key: str | None
    created_at: datetime


_COLUMNS = "id, login, email, email_confirmed, nickname, password_hash, photo_key, created_at"


def identity_key(text: str) -> str:
    """The form of a login or email under which it is unique and looked up:
    NFKC (compatibility forms such as full-width letters become the plain
    ones), Unicode case folding (any letter case; ``ß`` is ``ss``), and NFKC
    again, since folding may leave text that is not normalized."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def _user(row: asyncpg.Record | None) -> User | None:
    return User(**dict(row)) if row is not None else None


async def create_user(db: Database, login: str, email: str, password_hash: str) -> User:
    """Insert an account; a taken login or email (by identity key, or
    case-insensitively for the database) is ``IdentityTaken``."""
    try:
        row = await db.fetchrow(
            "users.create_user",
            "INSERT INTO users (login, email, nickname, password_hash, login_key, email_key)"
            f" VALUES ($1, $2, $1, $3, $4, $5) RETURNING {_COLUMNS}",
            login,
            email,
            password_hash,
            identity_key(login),
            identity_key(email),
        )
    except asyncpg.UniqueViolationError as exc:
        if "email" in (exc.constraint_name or ""):
            raise IdentityTaken("email") from None
        raise IdentityTaken("login") from None
    assert row is not None  # INSERT ... RETURNING always returns its row
    return User(**dict(row))


async def identity_taken(db: Database, login: str, email: str) -> str | None:
    """Which of login/email is already used (by identity key), checked before
    the costly hash."""
    row = await db.fetchrow(
        "users.identity_taken",
        "SELECT bool_or(login_key = $1) AS login, bool_or(email_key = $2) AS email"
        " FROM users WHERE login_key = $1 OR email_key = $2",
        identity_key(login),
        identity_key(email),
    )
    if row and row["email"]:
        return "email"
    if row and row["login"]:
        return "login"
    return None


async def get_user(db: Database, user_id: int) -> User | None:
    return _user(await db.fetchrow("users.get", f"SELECT {_COLUMNS} FROM users WHERE id = $1", user_id))


async def find_for_login(db: Database, email_or_login: str) -> User | None:
    """The account an ``Auth`` names, by email or by login: the one whose
    identity key is the text's (a login has no ``@``)."""
    key = identity_key(email_or_login)
    column = "email_key" if "@" in key else "login_key"
    return _user(
        await db.fetchrow("users.find_for_login", f"SELECT {_COLUMNS} FROM users WHERE {column} = $1", key)
    )


async def find_by_login(db: Database, login: str) -> User | None:
    """The account whose login is ``login`` (by identity key: any letter case)."""
    return _user(await db.fetchrow(
        "users.find_by_login", f"SELECT {_COLUMNS} FROM users WHERE login_key = $1", identity_key(login)
    ))


async def set_password_hash(db: Database, user_id: int, password_hash: str) -> None:
    sql = "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1"
    await db.execute("users.set_password", sql, user_id, password_hash)


async def count(db: Database) -> int:
    return await db.fetchval("users.count", "SELECT count(*) FROM users")


# -- profiles --------------------------------------------------------------------------


async def lock_for_update(db: Database, user_id: int) -> User | None:
    """Read the user and hold its row until the transaction ends, so that two
    requests changing the same account's email run one after the other.  (``NO
    KEY`` lock: rows referencing the user, like new messages, are not held up.)"""
    return _user(await db.fetchrow("users.lock_for_update", f"SELECT {_COLUMNS} FROM users WHERE id = $1 FOR NO KEY UPDATE", user_id))


async def email_owner(db: Database, email: str) -> int | None:
    """The id of the account registered with ``email`` (by identity key), if any."""
    sql = "SELECT id FROM users WHERE email_key = $1"
    return await db.fetchval("users.email_owner", sql, identity_key(email))


async def set_confirmed_email(db: Database, user_id: int, email: str) -> None:
    """Make ``email`` the user's confirmed address.  Another account holding it
    (registered since the code was sent) is ``IdentityTaken``."""
    try:
        await db.execute(
            "users.set_confirmed_email",
            "UPDATE users SET email = $2, email_key = $3, email_confirmed = true, updated_at = now() WHERE id = $1",
            user_id,
            email,
            identity_key(email),
        )
    except asyncpg.UniqueViolationError:
        raise IdentityTaken("email") from None


async def update_profile(
    db: Database,
    user_id: int,
    *,
    nickname: str | None = None,
    photo_key: str | None = None,
    password_hash: str | None = None,
) -> None:
    """Change any of nickname, photo and password hash in one statement; None keeps a value."""
    await db.execute(
        "users.update_profile",
        "UPDATE users SET nickname = coalesce($2, nickname), photo_key = coalesce($3, photo_key),"
        " password_hash = coalesce($4, password_hash), updated_at = now() WHERE id = $1",
        user_id,
        nickname,
        photo_key,
        password_hash,
    )


# -- for operators ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserSummary:
    """One line of ``admin users list``: who, and how many devices are logged in."""

    id: int
    login: str
    email: str
    email_confirmed: bool
    nickname: str
    created_at: datetime
    live_sessions: int


async def list_users(db: Database, *, search: str | None = None, take: int = 100, skip: int = 0) -> list[UserSummary]:
    """Accounts in id order; ``search``: only those whose login, email or
    nickname contains the text (any letter case).  For operators: no index
    is used for the search, which is fine at an admin's pace."""
    pattern = None
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped.lower()}%"
    rows = await db.fetch(
        "users.list_users",
        "SELECT u.id, u.login, u.email, u.email_confirmed, u.nickname, u.created_at,"
        " (SELECT count(*) FROM sessions s WHERE s.user_id = u.id AND s.revoked_at IS NULL) AS live_sessions"
        " FROM users u"
        " WHERE $1::text IS NULL OR lower(u.login) LIKE $1 OR lower(u.email) LIKE $1 OR lower(u.nickname) LIKE $1"
        " ORDER BY u.id LIMIT $2 OFFSET $3",
        pattern,
        take,
        skip,
    )
    return [UserSummary(**dict(r)) for r in rows]
