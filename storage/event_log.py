"""The per-user event log behind push and catch-up.

Each user has a counter row; appending an event locks the counters of its
recipients (in user id order, so two appends never deadlock), bumps them, and
inserts one row per recipient.  Because the counter row stays locked until the
transaction commits, a user's events commit in sequence order: once event N is
visible, every event before N is visible too.  That is what makes "read
everything after my last seq" lossless.

The payload is the caller's and opaque here: what a read needs to know about
an event (its dialog, the message it carries a copy of, the user it is about)
is given to ``append`` as values and kept in columns of their own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import orjson

from .db import Database
from .errors import LogTrimmed
from .messages import MESSAGE_NOW_COLUMNS, MESSAGE_NOW_MEDIA, MessageRow, message_now


class EventRow(NamedTuple):
    """One event of one user's log.  A NamedTuple: a message to a dialog of a
    thousand members makes a thousand of them, and a tuple is several times
    cheaper to build than a frozen dataclass.

    An event that carries a message is stored as a reference to it
    (its dialog and its id), not a copy: ``payload`` is None
    on a read of the log, and ``message`` is that message as it is now (None
    if it no longer exists), for the reader to show.  Events appended in this
    process keep the payload they were appended with."""

    user_id: int
    seq: int
    kind: str
    payload: dict[str, Any] | None
    created_at: datetime
    message: MessageRow | None = None
    dialog_key: str | None = None
    dialog_id: int | None = None


class EventPage(NamedTuple):
    """A read of the log: the events the reader may see, the user's newest
    seq, and the newest seq examined (``through``: the events between the
    last one returned and it are about dialogs the reader has left)."""

    rows: list[EventRow]
    last_seq: int
    through: int


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
), dialog AS (
    SELECT id FROM dialogs WHERE key = $4::text
)
INSERT INTO events (user_id, seq, kind, payload, dialog_id, message_id, subject_id)
SELECT user_id, last_seq, $2, $3::jsonb, (SELECT id FROM dialog),
       (SELECT m.id FROM messages m WHERE m.dialog_id = (SELECT id FROM dialog) AND m.key = $5::text),
       $6::bigint
FROM bumped
RETURNING user_id, seq, created_at, dialog_id
"""

#: The log as its reader may see it now.  An event about a dialog (its
#: ``dialog_id`` set) is kept only while the reader is a member: a member who
#: left or was removed loses the dialog's history, its events included, but
#: keeps the events about themselves (``subject_id``: their own removal).  An
#: event that carries a message (``message_id`` set) comes with that message
#: as it is now, media included, so that an edit or a delete for everyone
#: shows in every log at once and no log holds a copy of any text.  The
#: filter runs over a page of the log, not before the limit: ``through``
#: tells how far the page reached.
READ_AFTER_SQL = f"""
SELECT e.seq, e.kind, e.payload::text AS payload, e.created_at, d.key AS dialog_key, e.dialog_id,
       (e.dialog_id IS NULL OR dm.user_id IS NOT NULL OR coalesce(e.subject_id = e.user_id, false)) AS visible,
       {MESSAGE_NOW_COLUMNS}
FROM (
    SELECT ev.* FROM events ev
    WHERE ev.user_id = $1 AND ev.seq > $2 ORDER BY ev.seq LIMIT $3
) AS e
LEFT JOIN dialogs d ON d.id = e.dialog_id
LEFT JOIN dialog_members dm ON dm.dialog_id = e.dialog_id AND dm.user_id = e.user_id
LEFT JOIN messages m ON m.dialog_id = e.dialog_id AND m.id = e.message_id
{MESSAGE_NOW_MEDIA}
ORDER BY e.seq
"""


async def append(
    db: Database,
    user_ids: list[int] | set[int],
    kind: str,
    payload: dict[str, Any],
    *,
    stored: bool = True,
    dialog_key: str | None = None,
    message_key: str | None = None,
    subject_id: int | None = None,
) -> list[EventRow]:
    """Record one event for each recipient; ``db`` is normally the caller's
    transaction (``Database.atomic``), so the event commits with the change it
    tells of.  ``dialog_key``: the dialog the event is about (members only
    read it); ``message_key``: the message of that dialog it carries
    of (read back as it is now); ``subject_id``: the user it is about, who
    reads it even when no longer a member (see READ_AFTER_SQL).  ``stored``
    False: the payload is not written (an event that carries a message, read
    back from the message itself); the rows returned keep it for the push."""
    if not user_ids:
        return []
    text = orjson.dumps(payload).decode() if stored else None
    rows = await db.fetch(
        "events.append", APPEND_SQL, sorted(set(user_ids)), kind, text, dialog_key, message_key, subject_id
    )
    return [
        EventRow(r["user_id"], r["seq"], kind, payload, r["created_at"], None, dialog_key, r["dialog_id"])
        for r in rows
    ]


async def read_after(db: Database, user_id: int, after: int, limit: int) -> EventPage:
    """Events after ``after`` (oldest first) as the user may see them now
    (see READ_AFTER_SQL), and the user's latest seq.

    Raises ``LogTrimmed`` when events after ``after`` have already been
    trimmed away: the reader must resync its state instead of replaying."""
    async with db.connection("events.read_after") as conn:
        state = await conn.fetchrow(
            "SELECT last_seq, trimmed_through FROM user_event_seq WHERE user_id = $1", user_id
        )
        last_seq, trimmed = (state["last_seq"], state["trimmed_through"]) if state else (0, 0)
        if after < trimmed:
            raise LogTrimmed(last_seq, trimmed)
        records = await conn.fetch(READ_AFTER_SQL, user_id, after, limit) if limit else []
    rows = [
        EventRow(
            user_id,
            r["seq"],
            r["kind"],
            None if r["payload"] is None else orjson.loads(r["payload"]),
            r["created_at"],
            message_now(r),
            r["dialog_key"],
            r["dialog_id"],
        )
        for r in records
        if r["visible"]
    ]
    return EventPage(rows, last_seq, records[-1]["seq"] if records else after)


async def last_seq(db: Database, user_id: int) -> int:
    return await db.fetchval("events.last_seq", "SELECT last_seq FROM user_event_seq WHERE user_id = $1", user_id) or 0


async def trim(db: Database, *, keep_days: float, keep_per_user: int) -> int:
    """Delete events older than ``keep_days`` or beyond the newest
    ``keep_per_user`` of a user; remember how far each user was trimmed."""
    async with db.atomic("events.trim") as tx:
        rows = await tx.fetch(
            "events.trim",
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
            await tx.execute(
                "events.trim",
                "UPDATE user_event_seq s SET trimmed_through = GREATEST(s.trimmed_through, t.upto)"
                " FROM unnest($1::bigint[], $2::bigint[]) AS t(user_id, upto) WHERE s.user_id = t.user_id",
                [r["user_id"] for r in rows],
                [r["upto"] for r in rows],
            )
    return sum(r["n"] for r in rows)
