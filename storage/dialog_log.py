"""The log of a large dialog: one row per event, whatever the number of members.

A small dialog's events go to each member's own log (storage/event_log.py),
numbered per user (``seq``).  A large dialog's go here once, numbered per
dialog (``pts``): appending bumps ``dialogs.last_pts`` with the dialog row
locked until the transaction commits, so a dialog's events commit in ``pts``
order and "read everything after my last pts" is lossless, as it is for a
user's ``seq``.  A member reads the events after the later of their position
and the point they joined (``joined_pts``); a member who left reads nothing
more but the event of their own removal.  An event that carries a message
names it (``message_id``) and is read back with the message as it is now.

The log is trimmed by age and to a number of newest events (``trim``);
``dialogs.trimmed_pts`` remembers how far, and a read from an older position
raises ``DialogLogTrimmed`` rather than skip what is gone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import orjson

from .db import Database
from .errors import DialogLogTrimmed
from .messages import MESSAGE_NOW_COLUMNS, MESSAGE_NOW_MEDIA, MessageRow, message_now


class DialogEventRow(NamedTuple):
    """One event of one large dialog's log.  ``payload`` is None on a read for
    an event that carries a message (``message`` is that message now)."""

    dialog_id: int
    pts: int
    kind: str
    payload: dict[str, Any] | None
    created_at: datetime
    message: MessageRow | None = None
    dialog_key: str | None = None


class DialogEventPage(NamedTuple):
    """A read of a dialog's log: the events the reader may see, the dialog's
    newest pts, and the newest pts examined."""

    rows: list[DialogEventRow]
    last_pts: int
    through: int


APPEND_SQL = """
WITH bumped AS (
    UPDATE dialogs SET last_pts = last_pts + 1 WHERE id = $1 AND large RETURNING key, last_pts
)
INSERT INTO dialog_events (dialog_id, pts, kind, payload, message_id, subject_id)
SELECT $1, b.last_pts, $2, $3::jsonb,
       (SELECT m.id FROM messages m WHERE m.dialog_id = $1 AND m.key = $4::text), $5::bigint
FROM bumped b
RETURNING pts, created_at, (SELECT key FROM bumped) AS dialog_key
"""

#: $1 dialog key, $2 reader, $3 after, $4 limit.  The reader must be a member
#: now (or the event is their own removal), and reads from where they joined.
READ_AFTER_SQL = f"""
SELECT e.pts, e.kind, e.payload::text AS payload, e.created_at, d.key AS dialog_key,
       (dm.user_id IS NOT NULL AND e.pts > dm.joined_pts) OR coalesce(e.subject_id = $2, false) AS visible,
       {MESSAGE_NOW_COLUMNS}
FROM (
    SELECT ev.* FROM dialog_events ev
    WHERE ev.dialog_id = (SELECT id FROM dialogs WHERE key = $1) AND ev.pts > $3 ORDER BY ev.pts LIMIT $4
) AS e
JOIN dialogs d ON d.id = e.dialog_id
LEFT JOIN dialog_members dm ON dm.dialog_id = e.dialog_id AND dm.user_id = $2
LEFT JOIN messages m ON m.dialog_id = e.dialog_id AND m.id = e.message_id
{MESSAGE_NOW_MEDIA}
ORDER BY e.pts
"""


async def append(
    db: Database,
    dialog_id: int,
    kind: str,
    payload: dict[str, Any],
    *,
    stored: bool = True,
    message_key: str | None = None,
    subject_id: int | None = None,
) -> DialogEventRow | None:
    """Record one event of a large dialog inside the caller's transaction;
    None if the dialog is not large (the caller logs it per member instead).
    ``stored`` False: the payload is not written (an event that carries the
    message ``message_key``, read back from the message itself)."""
    text = orjson.dumps(payload).decode() if stored else None
    row = await db.fetchrow("dialog_log.append", APPEND_SQL, dialog_id, kind, text, message_key, subject_id)
    if row is None:
        return None
    return DialogEventRow(dialog_id, row["pts"], kind, payload, row["created_at"], None, row["dialog_key"])


async def read_after(db: Database, dialog_key: str, reader_id: int, after: int, limit: int) -> DialogEventPage:
    """The dialog's events after ``after`` (oldest first) as ``reader_id`` may
    see them now, with the dialog's newest pts.

    Raises ``DialogLogTrimmed`` when events the reader could see after
    ``after`` (it sees none from before it joined) are already trimmed."""
    state = await db.fetchrow(
        "dialog_log.state",
        "SELECT d.id, d.last_pts, d.trimmed_pts, coalesce(dm.joined_pts, 0) AS joined_pts FROM dialogs d"
        " LEFT JOIN dialog_members dm ON dm.dialog_id = d.id AND dm.user_id = $2 WHERE d.key = $1",
        dialog_key,
        reader_id,
    )
    if state is None:
        return DialogEventPage([], 0, after)
    if max(after, state["joined_pts"]) < state["trimmed_pts"]:
        raise DialogLogTrimmed(dialog_key, state["last_pts"], state["trimmed_pts"])
    records = await db.fetch("dialog_log.read_after", READ_AFTER_SQL, dialog_key, reader_id, after, limit)
    rows = [
        DialogEventRow(
            state["id"],
            r["pts"],
            r["kind"],
            None if r["payload"] is None else orjson.loads(r["payload"]),
            r["created_at"],
            message_now(r),
            r["dialog_key"],
        )
        for r in records
        if r["visible"]
    ]
    return DialogEventPage(rows, state["last_pts"], records[-1]["pts"] if records else after)


async def followed_by(db: Database, user_id: int) -> dict[str, int]:
    """The large dialogs ``user_id`` is a member of, with each one's newest pts."""
    rows = await db.fetch(
        "dialog_log.followed_by",
        "SELECT d.key, d.last_pts FROM dialog_members dm JOIN dialogs d ON d.id = dm.dialog_id"
        " WHERE dm.user_id = $1 AND d.large",
        user_id,
    )
    return {r["key"]: r["last_pts"] for r in rows}


async def last_pts(db: Database, dialog_id: int) -> int:
    return await db.fetchval("dialog_log.last_pts", "SELECT last_pts FROM dialogs WHERE id = $1", dialog_id) or 0


class SizeState(NamedTuple):
    members: int
    large: bool
    last_pts: int


async def size_state(db: Database, dialog_id: int) -> SizeState:
    """Whether the dialog keeps its own log, and if not how many members it
    has now (not counted for a large one: nothing depends on it)."""
    row = await db.fetchrow(
        "dialog_log.size_state",
        "SELECT CASE WHEN d.large THEN 0 ELSE (SELECT count(*) FROM dialog_members WHERE dialog_id = d.id) END"
        " AS members, d.large, d.last_pts FROM dialogs d WHERE d.id = $1",
        dialog_id,
    )
    assert row is not None  # the caller holds the dialog's management lock
    return SizeState(row["members"], row["large"], row["last_pts"])


async def make_large(db: Database, dialog_id: int) -> int:
    """Switch a dialog to its own log, inside the caller's transaction (which
    holds the dialog row from here to its commit); returns the pts its log
    starts after.  Members read it from there on (``joined_pts``)."""
    pts = await db.fetchval(
        "dialog_log.make_large", "UPDATE dialogs SET large = true WHERE id = $1 RETURNING last_pts", dialog_id
    )
    return int(pts or 0)  # 0: the log is new; every member's joined_pts (0) is its start


async def set_joined(db: Database, dialog_id: int, user_ids: list[int]) -> None:
    """Members just added to a large dialog read its log from now on."""
    await db.execute(
        "dialog_log.set_joined",
        "UPDATE dialog_members dm SET joined_pts = d.last_pts FROM dialogs d"
        " WHERE d.id = $1 AND dm.dialog_id = d.id AND dm.user_id = ANY($2::bigint[])",
        dialog_id, user_ids,
    )


async def trim(db: Database, *, keep_days: float, keep_per_dialog: int) -> int:
    """Delete large dialogs' events older than ``keep_days`` or beyond the
    newest ``keep_per_dialog`` of a dialog; remember how far each was trimmed."""
    async with db.atomic("dialog_log.trim") as tx:
        rows = await tx.fetch(
            "dialog_log.trim",
            """
            WITH doomed AS (
                DELETE FROM dialog_events e
                WHERE e.created_at < now() - make_interval(secs => $1)
                   OR e.pts <= (SELECT d.last_pts - $2 FROM dialogs d WHERE d.id = e.dialog_id)
                RETURNING e.dialog_id, e.pts
            )
            SELECT dialog_id, max(pts) AS upto, count(*) AS n FROM doomed GROUP BY dialog_id
            """,
            keep_days * 86400.0,
            keep_per_dialog,
        )
        if rows:
            await tx.execute(
                "dialog_log.trim",
                "UPDATE dialogs d SET trimmed_pts = GREATEST(d.trimmed_pts, t.upto)"
                " FROM unnest($1::bigint[], $2::bigint[]) AS t(dialog_id, upto) WHERE d.id = t.dialog_id",
                [r["dialog_id"] for r in rows],
                [r["upto"] for r in rows],
            )
    return sum(r["n"] for r in rows)
