"""Users: accounts, credentials and public profile fields."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from protocol.status import Conflict

from .db import Database


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


def _user(row: asyncpg.Record | None) -> User | None:
    return User(**dict(row)) if row is not None else None


async def create_user(conn: asyncpg.Connection, login: str, email: str, password_hash: str) -> User:
    """Insert an account; a taken login or email (case-insensitive) is a Conflict."""
    try:
        row = await conn.fetchrow(
            f"INSERT INTO users (login, email, nickname, password_hash) VALUES ($1, $2, $1, $3) RETURNING {_COLUMNS}",
            login,
            email,
            password_hash,
        )
    except asyncpg.UniqueViolationError as exc:
        if "email" in (exc.constraint_name or ""):
            raise Conflict("email is already registered") from None
        raise Conflict("login is already taken") from None
    return _user(row)  # type: ignore[return-value]


async def identity_taken(db: Database, login: str, email: str) -> str | None:
    """Which of login/email is already used, checked before the costly hash."""
    row = await db.fetchrow(
        "users.identity_taken",
        "SELECT bool_or(lower(login) = lower($1)) AS login, bool_or(lower(email) = lower($2)) AS email"
        " FROM users WHERE lower(login) = lower($1) OR lower(email) = lower($2)",
        login,
        email,
    )
    if row and row["email"]:
        return "email"
    if row and row["login"]:
        return "login"
    return None


async def get_user(db: Database, user_id: int) -> User | None:
    return _user(await db.fetchrow("users.get", f"SELECT {_COLUMNS} FROM users WHERE id = $1", user_id))


async def find_for_login(db: Database, email_or_login: str) -> User | None:
    """The account an ``Auth`` names, by email or by login (case-insensitive)."""
    column = "email" if "@" in email_or_login else "login"
    return _user(
        await db.fetchrow(
            "users.find_for_login",
            f"SELECT {_COLUMNS} FROM users WHERE lower({column}) = lower($1)",
            email_or_login,
        )
    )


async def set_password_hash(conn: asyncpg.Connection | Database, user_id: int, password_hash: str) -> None:
    sql = "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1"
    if isinstance(conn, Database):
        await conn.execute("users.set_password", sql, user_id, password_hash)
    else:
        await conn.execute(sql, user_id, password_hash)


async def count(db: Database) -> int:
    return await db.fetchval("users.count", "SELECT count(*) FROM users")


# -- profiles --------------------------------------------------------------------------


async def lock_for_update(conn: asyncpg.Connection, user_id: int) -> User | None:
    """Read the user and hold its row until the transaction ends, so that two
    requests changing the same account's email run one after the other.  (``NO
    KEY`` lock: rows referencing the user, like new messages, are not held up.)"""
    return _user(await conn.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE id = $1 FOR NO KEY UPDATE", user_id))


async def email_owner(conn: asyncpg.Connection | Database, email: str) -> int | None:
    """The id of the account registered with ``email`` (case-insensitive), if any."""
    sql = "SELECT id FROM users WHERE lower(email) = lower($1)"
    if isinstance(conn, Database):
        return await conn.fetchval("users.email_owner", sql, email)
    return await conn.fetchval(sql, email)


async def set_confirmed_email(conn: asyncpg.Connection, user_id: int, email: str) -> None:
    """Make ``email`` the user's confirmed address.  Another account holding it
    (registered since the code was sent) is a Conflict."""
    try:
        await conn.execute(
            "UPDATE users SET email = $2, email_confirmed = true, updated_at = now() WHERE id = $1", user_id, email
        )
    except asyncpg.UniqueViolationError:
        raise Conflict("email is already registered") from None


async def update_profile(
    conn: asyncpg.Connection,
    user_id: int,
    *,
    nickname: str | None = None,
    photo_key: str | None = None,
    password_hash: str | None = None,
) -> None:
    """Change any of nickname, photo and password hash in one statement; None keeps a value."""
    await conn.execute(
        "UPDATE users SET nickname = coalesce($2, nickname), photo_key = coalesce($3, photo_key),"
        " password_hash = coalesce($4, password_hash), updated_at = now() WHERE id = $1",
        user_id,
        nickname,
        photo_key,
        password_hash,
    )
