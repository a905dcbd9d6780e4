"""Device sessions.  A token is never stored: only its SHA-256 digest."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .db import Database


@dataclass(frozen=True, slots=True)
class SessionRow:
    id: int
    user_id: int
    device_id: str
    client_name: str
    client_hashcert: str
    client_version: str
    created_at: datetime
    revoked_at: datetime | None


_COLUMNS = "id, user_id, device_id, client_name, client_hashcert, client_version, created_at, revoked_at"


async def create_session(
    db: Database,
    *,
    user_id: int,
    token_hash: bytes,
    device_id: str,
    device_os: str,
    device_mac: str,
    device_hostname: str,
    client_name: str,
    client_hashcert: str,
    client_version: str,
) -> SessionRow:
    sql = (
        "INSERT INTO sessions (user_id, token_hash, device_id, device_os, device_mac, device_hostname,"
        " client_name, client_hashcert, client_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        f" RETURNING {_COLUMNS}"
    )
    args = (user_id, token_hash, device_id, device_os, device_mac, device_hostname, client_name, client_hashcert, client_version)
    row = await db.fetchrow("sessions.create", sql, *args)
    assert row is not None  # INSERT ... RETURNING always returns its row
    return SessionRow(**dict(row))


async def find_by_token_hash(db: Database, token_hash: bytes) -> SessionRow | None:
    row = await db.fetchrow("sessions.find", f"SELECT {_COLUMNS} FROM sessions WHERE token_hash = $1", token_hash)
    return SessionRow(**dict(row)) if row else None


async def lock_live(db: Database, session_id: int) -> bool:
    """Whether the session is live, holding its row until the transaction
    ends: a revocation that committed first is seen, one that comes second
    waits for the caller's change to commit."""
    return bool(await db.fetchval("sessions.lock_live", "SELECT revoked_at IS NULL FROM sessions WHERE id = $1 FOR SHARE", session_id))


async def revoke(db: Database, session_id: int) -> bool:
    """Revoke one session; False if it was already revoked."""
    status = await db.execute(
        "sessions.revoke", "UPDATE sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", session_id
    )
    return status.endswith(" 1")


async def revoke_all_for_user(db: Database, user_id: int, except_session_id: int | None = None) -> list[int]:
    """Revoke every live session of a user but one; returns the revoked ids."""
    sql = (
        "UPDATE sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL"
        " AND id IS DISTINCT FROM $2 RETURNING id"
    )
    rows = await db.fetch("sessions.revoke_all", sql, user_id, except_session_id)
    return [r["id"] for r in rows]


async def touch(db: Database, session_ids: list[int]) -> None:
    """Record activity for many sessions at once (batched, not per request)."""
    if session_ids:
        await db.execute(
            "sessions.touch", "UPDATE sessions SET last_seen_at = now() WHERE id = ANY($1::bigint[])", session_ids
        )


# -- device sessions, as their owner sees them ------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceSession:
    """A live session as ``GetSessions`` lists it (``token_hash`` stays on the server)."""

    id: int
    user_id: int
    device_id: str
    device_os: str
    device_hostname: str
    client_name: str
    client_version: str
    created_at: datetime
    last_seen_at: datetime
    token_hash: bytes


_DEVICE_COLUMNS = (
    "id, user_id, device_id, device_os, device_hostname, client_name, client_version, created_at,"
    " last_seen_at, token_hash"
)


async def list_live(db: Database, user_id: int, *, take: int, skip: int) -> list[DeviceSession]:
    """The user's sessions that are not revoked, most recently seen first."""
    rows = await db.fetch(
        "sessions.list_live",
        f"SELECT {_DEVICE_COLUMNS} FROM sessions WHERE user_id = $1 AND revoked_at IS NULL"
        " ORDER BY last_seen_at DESC, id DESC LIMIT $2 OFFSET $3",
        user_id,
        take,
        skip,
    )
    return [DeviceSession(**dict(r)) for r in rows]


async def find_live(db: Database, user_id: int, session_id: int) -> DeviceSession | None:
    """One live session of this user; None for another user's or a revoked one."""
    row = await db.fetchrow(
        "sessions.find_live",
        f"SELECT {_DEVICE_COLUMNS} FROM sessions WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        session_id,
        user_id,
    )
    return DeviceSession(**dict(row)) if row else None


async def find_live_by_id(db: Database, session_id: int) -> DeviceSession | None:
    """A live session by id, whoever's it is (for operators); None if revoked or unknown."""
    row = await db.fetchrow(
        "sessions.find_live_by_id",
        f"SELECT {_DEVICE_COLUMNS} FROM sessions WHERE id = $1 AND revoked_at IS NULL",
        session_id,
    )
    return DeviceSession(**dict(row)) if row else None


async def list_live_all(db: Database, user_id: int) -> list[DeviceSession]:
    """Every live session of a user, most recently seen first, unpaged (for operators)."""
    rows = await db.fetch(
        "sessions.list_live_all",
        f"SELECT {_DEVICE_COLUMNS} FROM sessions WHERE user_id = $1 AND revoked_at IS NULL"
        " ORDER BY last_seen_at DESC, id DESC",
        user_id,
    )
    return [DeviceSession(**dict(r)) for r in rows]
