"""Totals for operators (``python -m server admin stats``).

Exact counts: each is a scan of its table, cheap at the sizes one
PostgreSQL holds, and run only on demand, never by the server itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from .db import Database


@dataclass(frozen=True, slots=True)
class Totals:
    users: int
    dialogs: int
    messages: int
    media_uploads: int
    media_files: int
    media_bytes: int
    sessions_live: int


async def totals(db: Database) -> Totals:
    """Media files are counted once per distinct content (uploads of the same
    bytes share one file on disk); deleted messages are not counted."""
    row = await db.fetchrow(
        "stats.totals",
        "SELECT"
        " (SELECT count(*) FROM users) AS users,"
        " (SELECT count(*) FROM dialogs) AS dialogs,"
        " (SELECT count(*) FROM messages WHERE deleted_at IS NULL) AS messages,"
        " (SELECT count(*) FROM media) AS media_uploads,"
        " (SELECT count(*) FROM (SELECT DISTINCT sha256 FROM media) f) AS media_files,"
        " (SELECT coalesce(sum(size), 0) FROM (SELECT DISTINCT ON (sha256) size FROM media) f) AS media_bytes,"
        " (SELECT count(*) FROM sessions WHERE revoked_at IS NULL) AS sessions_live",
    )
    assert row is not None
    return Totals(**{k: int(v) for k, v in dict(row).items()})



async def other_connections(db: Database) -> int:
    """Client connections to the cluster besides the one running this query:
    is anyone else (a server) using it?"""
    return await db.fetchval(
        "stats.other_connections",
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
    )
