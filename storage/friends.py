"""Friends (directed contact rows) and the block list."""

from __future__ import annotations

from .db import Database


async def blocked_between(db: Database, a: int, b: int) -> bool:
    """True if either user has blocked the other."""
    return await db.fetchval(
        "friends.blocked_between",
        "SELECT EXISTS (SELECT 1 FROM blocks WHERE (blocker_id = $1 AND blocked_id = $2)"
        " OR (blocker_id = $2 AND blocked_id = $1))",
        a,
        b,
    )
