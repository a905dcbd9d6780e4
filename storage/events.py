"""The per-user event log behind push and catch-up.

Each user has a counter row; appending an event locks the counters of its
recipients (in user id order, so two appends never deadlock), bumps them, and
inserts one row per recipient.  Because the counter row stays locked until the
transaction commits, a user's events commit in sequence order: once event N is
visible, every event before N is visible too.  That is what makes "read
everything after my last seq" lossless.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import asyncpg
import orjson

from protocol.status import Gone

from .db import Database


class EventRow(NamedTuple):
    """One event of one user's log.  A NamedTuple: a message to a dialog of a
    thousand members makes a thousand of them, and a tuple is several times
    cheaper to build than a frozen dataclass."""

    user_id: int
    seq: int
    kind: str
    payload: dict[str, Any]
    created_at: datetime


APPEND_SQL = """
WITH locked AS (
    SELECT user_id FROM user_event_seq
    WHERE user_id = ANY($1::bigint[])
    ORDER BY user_id
    FOR UPDATE
), bumped AS (
    UPDATE user_event_seq AS s SET last_seq = s.last_seq + 1
    FROM locked WHERE s.user_id = locked.user_id
    RETURNING s.user_id, s.last_seq
)
INSERT INTO events (user_id, seq, kind, payload)
SELECT user_id, last_seq, $2, $3::jsonb FROM bumped
RETURNING user_id, seq, created_at
"""

READ_AFTER_SQL = """
SELECT seq, kind, payload::text AS payload, created_at FROM events
WHERE user_id = $1 AND seq > $2 ORDER BY seq LIMIT $3
"""

READ_MANY_SQL = """
SELECT e.user_id, e.seq, e.kind, e.payload::text AS payload, e.created_at
FROM unnest($1::bigint[], $2::bigint[]) AS w(user_id, after)
JOIN LATERAL (
    SELECT * FROM events ev WHERE ev.user_id = w.user_id AND ev.seq > w.after ORDER BY ev.seq LIMIT $3
) e ON true
ORDER BY e.user_id, e.seq
"""


async def append(conn: asyncpg.Connection, user_ids: list[int] | set[int], kind: str, payload: dict[str, Any]) -> list[EventRow]:
    """Record one event for each recipient, inside the caller's transaction."""
    if not user_ids:
        return []
    text = orjson.dumps(payload).decode()
    rows = await conn.fetch(APPEND_SQL, sorted(set(user_ids)), kind, text)
    return [EventRow(r["user_id"], r["seq"], kind, payload, r["created_at"]) for r in rows]


async def read_after(db: Database, user_id: int, after: int, limit: int) -> tuple[list[EventRow], int]:
    """Events after ``after`` (oldest first) and the user's latest seq.

    Raises Gone when events after ``after`` have already been trimmed away:
    the client must resync its state instead of replaying."""
    async with db.connection("events.read_after") as conn:
        state = await conn.fetchrow(
            "SELECT last_seq, trimmed_through FROM user_event_seq WHERE user_id = $1", user_id
        )
        last_seq, trimmed = (state["last_seq"], state["trimmed_through"]) if state else (0, 0)
        if after < trimmed:
            raise Gone(f"events up to {trimmed} are no longer kept: resync and continue from {last_seq}", LastSeq=last_seq)
        rows = await conn.fetch(READ_AFTER_SQL, user_id, after, limit)
    return [EventRow(user_id, r["seq"], r["kind"], orjson.loads(r["payload"]), r["created_at"]) for r in rows], last_seq


async def read_many(db: Database, wanted: dict[int, int], limit: int = 1000) -> list[EventRow]:
    """For each user id -> after-seq, the events after it (cross-node delivery)."""
    if not wanted:
        return []
    users = list(wanted)
    rows = await db.fetch("events.read_many", READ_MANY_SQL, users, [wanted[u] for u in users], limit)
    return [EventRow(r["user_id"], r["seq"], r["kind"], orjson.loads(r["payload"]), r["created_at"]) for r in rows]


async def last_seq(db: Database, user_id: int) -> int:
    return await db.fetchval("events.last_seq", "SELECT last_seq FROM user_event_seq WHERE user_id = $1", user_id) or 0


async def trim(db: Database, *, keep_days: float, keep_per_user: int) -> int:
    """Delete events older than ``keep_days`` or beyond the newest
    ``keep_per_user`` of a user; remember how far each user was trimmed."""
    async with db.transaction("events.trim") as conn:
        rows = await conn.fetch(
            """
            WITH doomed AS (
                DELETE FROM events e
                WHERE e.created_at < now() - make_interval(secs => $1)
                   OR e.seq <= (SELECT s.last_seq - $2 FROM user_event_seq s WHERE s.user_id = e.user_id)
                RETURNING e.user_id, e.seq
            )
            SELECT user_id, max(seq) AS upto, count(*) AS n FROM doomed GROUP BY user_id
            """,
            keep_days * 86400.0,
            keep_per_user,
        )
        if rows:
            await conn.execute(
                "UPDATE user_event_seq s SET trimmed_through = GREATEST(s.trimmed_through, t.upto)"
                " FROM unnest($1::bigint[], $2::bigint[]) AS t(user_id, upto) WHERE s.user_id = t.user_id",
                [r["user_id"] for r in rows],
                [r["upto"] for r in rows],
            )
    return sum(r["n"] for r in rows)
