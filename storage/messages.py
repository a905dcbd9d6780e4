"""Messages, their media links, tombstones and per-user hiding.

Sending is the hot path: the group commit (server/group_commit.py) gathers
the sends that arrive while the database is busy and stores them with
``add_batch`` (``ADD_BATCH_SQL``), one statement (one round trip, one implicit
transaction, one WAL flush) that checks membership, the direct-message block
rule and media ownership per message, inserts the messages, their media links
and their events, and moves the dialogs' ``last_message_at``.

Edits, deletes and hides are one statement each as well; so is the newest
history page (membership, read marks, page and media: ``HISTORY_NEWEST_SQL``);
other reads take two (membership, then the page).  The SQL lives in module
constants so the scale test can EXPLAIN exactly what runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg

from .db import TRANSIENT_ERRORS, Database
from .dialogs import READER_SQL
from .errors import StorageBusy
from .planning import one_key

# -- sending --------------------------------------------------------------------------

#: Group commit: every send waiting when the writer is free goes into ONE
#: statement (one round trip, one implicit transaction, one WAL flush).  One
#: element per message: $1 dialog key, $2 author, $3 message key, $4 content,
#: $5 created_at, $6 forwarded message key or NULL, $7 important; media
#: flattened over all messages: $8 the message's ordinal (1-based), $9 media
#: key, $10 position; media an author may attach without owning them (those
#: of a forwarded message): $11 ordinal, $12 key; and $13 the kind the events
#: of the batch are recorded as.
#:
#: Per message it checks membership, the direct-message block rule and media
#: ownership, inserts the message and its media links; per dialog it moves
#: ``last_message_at`` once; per recipient it bumps the event counter once by
#: the number of that recipient's new events and numbers them in message
#: order.  The event rows go in with the messages: a message is never stored
#: without its event, which names its dialog and the message by id
#: (storage/event_log.py) and copies nothing of it: a read of the log shows
#: the message as it is now.  Counter rows
#: are locked in user id order, so batches
#: and other appends (storage/event_log.py) cannot deadlock on them, and before
#: any message id is drawn, so message ids and event seqs agree across nodes.
ADD_BATCH_SQL = """
WITH req AS (
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[],
                         $6::text[], $7::bool[])
        WITH ORDINALITY AS r(dialog_key, author_id, key, content, created_at, forwarded_key, important, n)
), media_in AS (
    SELECT * FROM unnest($8::int[], $9::text[], $10::int[]) WITH ORDINALITY AS u(n, k, p, o)
), checked AS (
    -- One row per message with every check a lookup of its own.  (Joining
    -- per-message CTEs by ordinal instead was estimated at one row each and
    -- planned as nested loops over CTE scans: quadratic in the batch, 44 ms of
    -- a 500-message batch.)
    SELECT r.*, me.dialog_id, coalesce(me.large, false) AS large, coalesce(pair.direct_block, false) AS blocked,
           r.forwarded_key IS NULL OR src.found AS source_ok
    FROM req r
    LEFT JOIN LATERAL (
        -- a lookup by key per message (a join would hash every dialog for a large batch)
        SELECT d.id AS dialog_id, d.large FROM dialogs d
        JOIN dialog_members dm ON dm.dialog_id = d.id AND dm.user_id = r.author_id
        WHERE d.key = r.dialog_key
        LIMIT 1
    ) AS me ON true
    LEFT JOIN LATERAL (
        -- up to three members: exactly two means a direct conversation
        SELECT cardinality(p.ids) = 2 AND EXISTS (
            SELECT 1 FROM blocks b
            WHERE (b.blocker_id = p.ids[1] AND b.blocked_id = p.ids[2])
               OR (b.blocker_id = p.ids[2] AND b.blocked_id = p.ids[1])
        ) AS direct_block
        FROM (
            SELECT array_agg(o.user_id) AS ids
            FROM (SELECT o.user_id FROM dialog_members o WHERE o.dialog_id = me.dialog_id LIMIT 3) AS o
        ) AS p
    ) AS pair ON true
    LEFT JOIN LATERAL (
        -- a forward: its source is still live and the author still in its
        -- dialog, now.  The source row is locked: a delete for everyone that
        -- committed first is seen (the row is read again once the lock is
        -- granted), one that comes second waits for this batch, so a deleted
        -- text is never carried into another dialog.
        SELECT true AS found FROM messages s
        JOIN dialog_members sm ON sm.dialog_id = s.dialog_id AND sm.user_id = r.author_id
        WHERE r.forwarded_key IS NOT NULL AND s.key = r.forwarded_key AND s.deleted_at IS NULL
          AND NOT EXISTS (SELECT 1 FROM message_hidden h
                          WHERE h.dialog_id = s.dialog_id AND h.user_id = r.author_id AND h.message_id = s.id)
        LIMIT 1
        FOR SHARE OF s
    ) AS src ON true
), missing AS (
    -- media that do not exist or are not the author's own uploads
    SELECT mi.n, array_agg(mi.k ORDER BY mi.o) AS keys
    FROM media_in mi
    JOIN req r ON r.n = mi.n
    WHERE NOT EXISTS (
        SELECT 1 FROM media
        WHERE media.key = mi.k
          AND (media.owner_id = r.author_id
               OR EXISTS (SELECT 1 FROM unnest($11::int[], $12::text[]) AS f(n, k) WHERE f.n = mi.n AND f.k = mi.k))
    )
    GROUP BY mi.n
), locked AS (
    -- The event counters of every member of the target dialogs, locked in
    -- user id order BEFORE the messages get their ids: two statements that
    -- share a recipient (two nodes sending into one dialog) then take ids
    -- and seqs in the same order, so pushes and history agree on the order.
    SELECT q.user_id FROM user_event_seq q
    WHERE q.user_id IN (
        SELECT dm.user_id FROM checked c JOIN dialog_members dm ON dm.dialog_id = c.dialog_id WHERE NOT c.large
    )
    ORDER BY q.user_id
    FOR UPDATE
), locked_large AS (
    -- A large dialog numbers its events itself (dialogs.last_pts): its row
    -- is locked, after the counters and before any message id is drawn, for
    -- the same reason (storage/dialog_log.py).
    SELECT d.id FROM dialogs d
    WHERE d.id IN (SELECT c.dialog_id FROM checked c WHERE c.large)
    ORDER BY d.id
    FOR UPDATE
), ins AS (
    INSERT INTO messages (dialog_id, key, author_id, content, created_at, forwarded_key, important)
    SELECT c.dialog_id, c.key, c.author_id, c.content, c.created_at, c.forwarded_key, c.important
    FROM checked c
    WHERE c.dialog_id IS NOT NULL AND NOT c.blocked AND c.source_ok
      AND NOT EXISTS (SELECT 1 FROM missing WHERE missing.n = c.n)
      AND (SELECT count(*) FROM locked) >= 0  -- evaluated first, once: the locks precede the ids
      AND (SELECT count(*) FROM locked_large) >= 0
    ORDER BY c.n
    ON CONFLICT (dialog_id, key) DO NOTHING
    RETURNING dialog_id, id, key, author_id, created_at
), stored AS (
    -- (dialog, key) is unique within a batch: the writer sees to it
    SELECT c.n, ins.dialog_id, ins.id, ins.author_id, c.large
    FROM ins
    JOIN checked c ON c.dialog_id = ins.dialog_id AND c.key = ins.key
), linked AS (
    INSERT INTO message_media (dialog_id, message_id, media_key, position)
    SELECT s.dialog_id, s.id, mi.k, mi.p
    FROM stored s JOIN media_in mi ON mi.n = s.n
), touched AS (
    -- a small dialog: its last message moves (a large one's below, with its pts)
    UPDATE dialogs SET last_message_at = t.at
    FROM (SELECT dialog_id, max(created_at) AS at FROM ins GROUP BY dialog_id) AS t
    WHERE dialogs.id = t.dialog_id AND NOT dialogs.large
      AND (dialogs.last_message_at IS NULL OR dialogs.last_message_at < t.at)
), bumped_large AS (
    -- a large dialog: its last message, and its pts moved past this batch's
    -- messages (numbered below in message order); its row is locked already
    UPDATE dialogs SET last_message_at = greatest(dialogs.last_message_at, t.at),
                       last_pts = dialogs.last_pts + t.logged
    FROM (SELECT s.dialog_id, max(r.created_at) AS at, count(*) AS logged
          FROM stored s JOIN req r ON r.n = s.n WHERE s.large GROUP BY s.dialog_id) AS t
    WHERE dialogs.id = t.dialog_id
    RETURNING dialogs.id, dialogs.last_pts - t.logged AS base
), dialog_numbered AS (
    SELECT s.n, s.dialog_id, s.id AS message_id,
           bl.base + row_number() OVER (PARTITION BY s.dialog_id ORDER BY s.n) AS pts
    FROM stored s JOIN bumped_large bl ON bl.id = s.dialog_id
    WHERE s.large
), devs AS (
    INSERT INTO dialog_events (dialog_id, pts, kind, message_id, created_at)
    SELECT dn.dialog_id, dn.pts, $13::text, dn.message_id, r.created_at
    FROM dialog_numbered dn JOIN req r ON r.n = dn.n
), recipients AS (
    SELECT s.n, s.dialog_id, s.id AS message_id, dm.user_id
    FROM stored s JOIN dialog_members dm ON dm.dialog_id = s.dialog_id
    WHERE NOT s.large
), bumped AS (
    UPDATE user_event_seq q SET last_seq = q.last_seq + c.count
    FROM (SELECT user_id, count(*) AS count FROM recipients GROUP BY user_id) AS c
    JOIN locked ON locked.user_id = c.user_id
    WHERE q.user_id = c.user_id
    RETURNING q.user_id, q.last_seq - c.count AS base
), numbered AS (
    SELECT rc.n, rc.dialog_id, rc.message_id, rc.user_id,
           b.base + row_number() OVER (PARTITION BY rc.user_id ORDER BY rc.n) AS seq
    FROM recipients rc JOIN bumped b ON b.user_id = rc.user_id
), evs AS (
    INSERT INTO events (user_id, seq, kind, created_at, dialog_id, message_id)
    SELECT nb.user_id, nb.seq, $13::text, r.created_at, nb.dialog_id, nb.message_id
    FROM numbered nb JOIN req r ON r.n = nb.n
), per_message AS (
    SELECT n, array_agg(user_id ORDER BY user_id) AS users, array_agg(seq ORDER BY user_id) AS seqs
    FROM numbered GROUP BY n
)
SELECT c.n, c.dialog_id, c.blocked, c.source_ok, coalesce(missing.keys, '{}') AS missing_media,
       s.id AS new_id, coalesce(s.author_id, earlier.author_id) AS author_id,
       (s.id IS NOT NULL OR earlier.found) AS stored,
       pm.users AS event_users, pm.seqs AS event_seqs, dn.pts AS pts
FROM checked c
LEFT JOIN missing ON missing.n = c.n
LEFT JOIN stored s ON s.n = c.n
LEFT JOIN LATERAL (
    -- a key already used: by whom (an index lookup, only for those not inserted)
    SELECT e.author_id, true AS found FROM messages e
    WHERE s.id IS NULL AND e.dialog_id = c.dialog_id AND e.key = c.key
    LIMIT 1  -- (dialog, key) is unique; the limit also keeps this a lookup, never a join of the whole table
) AS earlier ON true
LEFT JOIN per_message pm ON pm.n = c.n
LEFT JOIN dialog_numbered dn ON dn.n = c.n
ORDER BY c.n
"""


@dataclass(frozen=True, slots=True)
class MessageInsert:
    """One message to store, as ``add_batch`` takes it.  ``forwarded_media``: media the
    author may attach without owning them (those of the forwarded message)."""

    dialog_key: str
    author_id: int
    key: str
    content: str
    created_at: datetime
    media: tuple[str, ...] = ()
    positions: tuple[int, ...] = ()
    forwarded_media: tuple[str, ...] = ()
    forwarded_key: str | None = None
    important: bool = False


@dataclass(frozen=True, slots=True)
class Sent:
    """What storing a message did.  ``dialog_id`` None: not a member (or no such
    dialog).  ``created`` False with ``author_id`` set: the key was already
    used, by that author."""

    dialog_id: int | None
    blocked: bool = False
    missing_media: tuple[str, ...] = ()
    created: bool = False
    author_id: int | None = None
    events: tuple[tuple[int, int], ...] = ()  # (user id, seq) of the NewMessage events
    pts: int | None = None  # a large dialog's: the pts of its one NewMessage event
    source_gone: bool = False  # a forward whose source was deleted, hidden or left meanwhile


def batch_args(batch: Sequence[MessageInsert], event_kind: str) -> tuple[Any, ...]:
    """``ADD_BATCH_SQL``'s parameters for these messages, their events
    recorded as ``event_kind``, in order."""
    media_n: list[int] = []
    media_k: list[str] = []
    media_p: list[int] = []
    allowed_n: list[int] = []
    allowed_k: list[str] = []
    for n, m in enumerate(batch, 1):
        if m.media:
            media_n += [n] * len(m.media)
            media_k += m.media
            media_p += m.positions
        if m.forwarded_media:
            allowed_n += [n] * len(m.forwarded_media)
            allowed_k += m.forwarded_media
    return (
        [m.dialog_key for m in batch], [m.author_id for m in batch], [m.key for m in batch],
        [m.content for m in batch], [m.created_at for m in batch],
        [m.forwarded_key for m in batch], [m.important for m in batch],
        media_n, media_k, media_p, allowed_n, allowed_k, event_kind,
    )


def _sent(row: Any) -> Sent | None:
    """The outcome of one message of a batch; None: neither inserted nor
    found (the same key was being inserted concurrently and committed after
    the statement's snapshot: the next statement sees it)."""
    if row["dialog_id"] is None:
        return Sent(None)
    if row["blocked"] or row["missing_media"]:
        return Sent(row["dialog_id"], blocked=row["blocked"], missing_media=tuple(row["missing_media"]))
    if not row["stored"]:
        return Sent(row["dialog_id"], source_gone=True) if not row["source_ok"] else None
    events = tuple(zip(row["event_users"] or (), row["event_seqs"] or (), strict=True))
    return Sent(row["dialog_id"], created=row["new_id"] is not None, author_id=row["author_id"], events=events,
                pts=row["pts"])


async def add_batch(db: Database, batch: Sequence[MessageInsert], event_kind: str) -> list[Sent | None]:
    """Store a batch of messages and their events (recorded as ``event_kind``)
    in one statement (``ADD_BATCH_SQL``); one outcome per message, in order
    (None: to be tried again, see ``_sent``).  The caller (the group commit,
    server/group_commit.py) never puts two messages with the same dialog and
    key in one batch.  A deadlock is ``StorageBusy``: nothing was stored.  So
    is a media row removed (``admin media gc`` or ``delete``) between the
    statement's check of the media and its insert of the links: tried again,
    the check reports the key missing."""
    try:
        rows = await db.fetch("messages.add", ADD_BATCH_SQL, *batch_args(batch, event_kind))
    except TRANSIENT_ERRORS + (asyncpg.ForeignKeyViolationError,):
        raise StorageBusy("messages.add") from None
    return [_sent(row) for row in rows]


# -- edit, delete, hide ------------------------------------------------------------------

#: The caller's membership row is locked (FOR SHARE) for the rest of the
#: transaction: a kick or a change of role that commits first is seen (the row
#: is read again once the lock is granted), one that comes second waits.  The
#: right to change a message is decided against rows that cannot change under it.
_TARGET = """
WITH me AS (
    SELECT dm.dialog_id, dm.role
    FROM dialogs d
    JOIN dialog_members dm ON dm.dialog_id = d.id AND dm.user_id = $2
    WHERE d.key = $1
    FOR SHARE OF dm
), target AS (
    SELECT msg.dialog_id, msg.id, msg.author_id, msg.deleted_at
    FROM messages msg JOIN me ON msg.dialog_id = me.dialog_id
    WHERE msg.key = $3
)"""

_OUTCOME = """
SELECT me.dialog_id, me.role, target.id AS message_id, target.author_id,
       target.deleted_at IS NOT NULL AS deleted, done.id IS NOT NULL AS done
FROM me
LEFT JOIN target ON true
LEFT JOIN done ON true
"""

#: $1 dialog key, $2 caller, $3 message key, $4 new content.  Author only, not deleted.
EDIT_SQL = f"""{_TARGET}, done AS (
    UPDATE messages SET content = $4, updated_at = now()
    FROM target
    WHERE messages.dialog_id = target.dialog_id AND messages.id = target.id
      AND messages.author_id = $2 AND messages.deleted_at IS NULL
    RETURNING messages.id
){_OUTCOME}"""

#: Delete for everyone: the author or a dialog owner/admin.  The content and
#: media links go; the row stays as a tombstone with ``deleted_at``.
DELETE_SQL = f"""{_TARGET}, done AS (
    UPDATE messages SET content = '', forwarded_key = NULL, deleted_at = now()
    FROM target, me
    WHERE messages.dialog_id = target.dialog_id AND messages.id = target.id
      AND messages.deleted_at IS NULL
      AND (messages.author_id = $2 OR me.role IN ('owner', 'admin'))
    RETURNING messages.dialog_id, messages.id
), unlinked AS (
    DELETE FROM message_media mm USING done
    WHERE mm.dialog_id = done.dialog_id AND mm.message_id = done.id
){_OUTCOME}"""

#: Hide for the caller only (idempotent).
HIDE_SQL = f"""{_TARGET}, done AS (
    INSERT INTO message_hidden (dialog_id, message_id, user_id)
    SELECT target.dialog_id, target.id, $2 FROM target WHERE target.deleted_at IS NULL
    ON CONFLICT DO NOTHING
    RETURNING message_id AS id
){_OUTCOME}"""


@dataclass(frozen=True, slots=True)
class Changed:
    """The outcome of an edit, delete or hide.  ``role`` None: the caller is
    not a member; ``message_id`` None: no such message in the dialog."""

    role: str | None
    message_id: int | None = None
    author_id: int | None = None
    deleted: bool = False
    done: bool = False
    dialog_id: int | None = None


async def _change(db: Database, name: str, sql: str, *args) -> Changed:
    row = await db.fetchrow(name, sql, *args)
    if row is None:
        return Changed(None)
    return Changed(
        row["role"], row["message_id"], row["author_id"], bool(row["deleted"]), row["done"], row["dialog_id"]
    )


async def edit_message(db: Database, dialog_key: str, user_id: int, key: str, content: str) -> Changed:
    return await _change(db, "messages.edit", EDIT_SQL, dialog_key, user_id, key, content)


async def delete_message(db: Database, dialog_key: str, user_id: int, key: str) -> Changed:
    return await _change(db, "messages.delete", DELETE_SQL, dialog_key, user_id, key)


async def hide_message(db: Database, dialog_key: str, user_id: int, key: str) -> Changed:
    """``done`` is False both for "already hidden" and for a deleted message."""
    return await _change(db, "messages.hide", HIDE_SQL, dialog_key, user_id, key)


# -- reading ----------------------------------------------------------------------------


class MessageRow(NamedTuple):
    """One stored message.  A NamedTuple built straight from the record (the
    page queries select exactly these columns in this order): a history page
    makes fifty of them, and a tuple is several times cheaper to build than a
    frozen dataclass.  ``read``: on the newest page, for the reader's own
    message whether another member has read it, for others' whether the
    reader has; None where a query does not work it out."""

    id: int
    key: str
    author_id: int | None
    content: str
    created_at: datetime
    updated_at: datetime | None
    deleted_at: datetime | None
    forwarded_key: str | None
    important: bool
    media: Sequence[str]
    positions: Sequence[int]
    read: bool | None = None


_VISIBLE = """
m.dialog_id = $1 AND m.deleted_at IS NULL
AND NOT EXISTS (
    SELECT 1 FROM message_hidden h
    WHERE h.dialog_id = m.dialog_id AND h.user_id = $2 AND h.message_id = m.id
)"""


def _with_media(inner: str, order: str) -> str:
    """Page first, then look up the media of just that page's messages."""
    return f"""
SELECT m.id, m.key, m.author_id, m.content, m.created_at, m.updated_at, m.deleted_at,
       m.forwarded_key, m.important, coalesce(media.keys, '{{}}') AS media,
       coalesce(media.positions, '{{}}') AS positions, NULL::boolean AS read
FROM ({inner}) AS m
LEFT JOIN LATERAL (
    SELECT array_agg(mm.media_key ORDER BY mm.position, mm.media_key) AS keys,
           array_agg(mm.position ORDER BY mm.position, mm.media_key) AS positions
    FROM message_media mm
    WHERE mm.dialog_id = m.dialog_id AND mm.message_id = m.id
) AS media ON true
ORDER BY m.id {order}
"""


#: ... $5 since: messages created or edited after it, oldest first (catch-up).
#: The two conditions are separate range scans of their own indexes, so the
#: plan stays proportional to what is new whatever the values (also as the
#: generic plan of a prepared statement).
PAGE_SINCE_SQL = _with_media(
    f"SELECT * FROM messages m WHERE {_VISIBLE} AND m.id IN ("
    " SELECT id FROM messages WHERE dialog_id = $1 AND created_at > $5"
    " UNION"
    " SELECT id FROM messages WHERE dialog_id = $1 AND updated_at > $5)"
    " ORDER BY m.id ASC LIMIT $3 OFFSET $4",
    "ASC",
)

#: $1 dialog id, $2 reader, $3 message key.
SINGLE_SQL = _with_media(f"SELECT * FROM messages m WHERE {_VISIBLE} AND m.key = $3", "ASC")

#: $1 dialog id, $2 take, $3 skip: tombstones, newest first.
DELETED_NEWEST_SQL = _with_media(
    "SELECT * FROM messages m WHERE m.dialog_id = $1 AND m.deleted_at IS NOT NULL"
    " ORDER BY m.id DESC LIMIT $2 OFFSET $3",
    "DESC",
)

#: ... $4 since: deleted after it, oldest message first.
DELETED_SINCE_SQL = _with_media(
    "SELECT * FROM messages m WHERE m.dialog_id = $1 AND m.deleted_at IS NOT NULL AND m.deleted_at > $4"
    " ORDER BY m.id ASC LIMIT $2 OFFSET $3",
    "ASC",
)


def _message(row: Any) -> MessageRow:
    return MessageRow._make(row)


async def page_since(
    db: Database, dialog_id: int, reader_id: int, *, since: datetime, take: int, skip: int
) -> list[MessageRow]:
    """The catch-up page: visible messages (not deleted, not hidden by the
    reader) new or edited after ``since``.  The newest page is ``newest_page``."""
    rows = await db.fetch("messages.page_since", PAGE_SINCE_SQL, dialog_id, reader_id, take, skip, since)
    return [_message(r) for r in rows]


# -- the newest page: membership, read marks and the page in one statement ---------------

#: $1 dialog key, $2 reader, $3 take, $4 skip: GetMessages' newest page, newest
#: first, in one round trip.  No row when the reader is not a member (or there
#: is no such dialog); one row of NULLs for an empty page.
#:
#: Columns: ``MessageRow``'s, in its order, ``read`` worked out.
#:
#: ``r`` is ``storage.dialogs.READER_SQL``, materialized so that its subquery
#: runs once, not once per message; the page is the visible messages newest
#: first, its dialog taken as a range (``planning.one_key``: the dialog comes from ``r``,
#: and estimated as an average dialog a page at skip 1 000 of a long dialog
#: was planned as a read and sort of all its messages, 167 ms instead of 2); the
#: media of the whole page come from one index scan of the page's ids, grouped,
#: instead of one aggregate (and its sort) per message.  The catch-up page
#: stays two statements: it is planned per execution, and planning this one
#: costs PostgreSQL more than the round trip it saves.
HISTORY_NEWEST_SQL = f"""
WITH r AS MATERIALIZED ({READER_SQL}), page AS MATERIALIZED (
    SELECT m.id, m.key, m.author_id, m.content, m.created_at, m.updated_at, m.deleted_at,
           m.forwarded_key, m.important
    FROM r CROSS JOIN LATERAL (
        SELECT * FROM messages m
        WHERE {one_key("m.dialog_id", "r.id")} AND m.deleted_at IS NULL
          AND NOT EXISTS (
              SELECT 1 FROM message_hidden h
              WHERE h.dialog_id = r.id AND h.user_id = $2 AND h.message_id = m.id
          )
        ORDER BY m.dialog_id DESC, m.id DESC LIMIT $3 OFFSET $4
    ) AS m
), media AS MATERIALIZED (  -- grouped once, whatever join the planner picks
    SELECT mm.message_id,
           array_agg(mm.media_key ORDER BY mm.position, mm.media_key) AS keys,
           array_agg(mm.position ORDER BY mm.position, mm.media_key) AS positions
    FROM r JOIN message_media mm ON mm.dialog_id = r.id AND mm.message_id = ANY (ARRAY(SELECT id FROM page))
    GROUP BY mm.message_id
)
SELECT m.id, m.key, m.author_id, m.content, m.created_at, m.updated_at, m.deleted_at,
       m.forwarded_key, m.important, coalesce(media.keys, '{{}}') AS media,
       coalesce(media.positions, '{{}}') AS positions,
       m.id <= CASE WHEN m.author_id = $2 THEN r.others ELSE r.mine END AS read
FROM r
LEFT JOIN page m ON true
LEFT JOIN media ON media.message_id = m.id
ORDER BY m.id DESC
"""


async def newest_page(
    db: Database, dialog_key: str, reader_id: int, *, take: int, skip: int
) -> list[MessageRow] | None:
    """GetMessages' newest page, newest first, with ``read`` worked out; None
    when ``reader_id`` is not a member of the dialog."""
    rows = await db.fetch("messages.newest_page", HISTORY_NEWEST_SQL, dialog_key, reader_id, take, skip)
    if not rows:
        return None
    if rows[0][0] is None:  # a member; no message on this page
        return []
    return [MessageRow._make(r) for r in rows]


#: A message as it is now, beside an event that names it (``m``: the
#: messages row, NULL when there is none; ``MESSAGE_NOW_MEDIA`` joined after
#: it): what a read of either event log shows instead of a copy.
MESSAGE_NOW_COLUMNS = """m.id AS message_id, m.key, m.author_id, m.content, m.created_at AS message_created_at,
       m.updated_at, m.deleted_at, m.forwarded_key, m.important, coalesce(media.keys, '{}') AS media,
       coalesce(media.positions, '{}') AS positions"""
MESSAGE_NOW_MEDIA = """LEFT JOIN LATERAL (
    SELECT array_agg(mm.media_key ORDER BY mm.position, mm.media_key) AS keys,
           array_agg(mm.position ORDER BY mm.position, mm.media_key) AS positions
    FROM message_media mm
    WHERE m.id IS NOT NULL AND mm.dialog_id = m.dialog_id AND mm.message_id = m.id
) AS media ON true"""


def message_now(r: Any) -> MessageRow | None:
    """The message of a record selected with ``MESSAGE_NOW_COLUMNS``; None if there was none."""
    if r["message_id"] is None:
        return None
    return MessageRow(r["message_id"], r["key"], r["author_id"], r["content"], r["message_created_at"],
                      r["updated_at"], r["deleted_at"], r["forwarded_key"], r["important"], r["media"], r["positions"])


#: $1 dialog id, $2 take: the newest messages as every member sees them (no
#: one's hidden messages left out, no read marks): the page the server keeps
#: in memory (server/history_cache.py).
SHARED_NEWEST_SQL = _with_media(
    "SELECT * FROM messages m WHERE m.dialog_id = $1 AND m.deleted_at IS NULL ORDER BY m.id DESC LIMIT $2",
    "DESC",
)


async def shared_newest(db: Database, dialog_id: int, take: int) -> list[MessageRow]:
    """The newest ``take`` messages of a dialog, newest first, for any member
    who has hidden none of them (``read`` None: the reader's marks decide it)."""
    rows = await db.fetch("messages.shared_newest", SHARED_NEWEST_SQL, dialog_id, take)
    return [MessageRow._make(r) for r in rows]


#: $1 reader, $2 message key: a message the reader can see, in any of their dialogs.
FIND_VISIBLE_SQL = _with_media(
    "SELECT m.* FROM messages m JOIN dialog_members dm ON dm.dialog_id = m.dialog_id AND dm.user_id = $1"
    " WHERE m.key = $2 AND m.deleted_at IS NULL AND NOT EXISTS ("
    "  SELECT 1 FROM message_hidden h WHERE h.dialog_id = m.dialog_id AND h.user_id = $1 AND h.message_id = m.id)"
    " LIMIT 1",
    "ASC",
)


#: $1 dialog id, $2 message id: the row as stored, for events.
BY_ID_SQL = _with_media("SELECT * FROM messages m WHERE m.dialog_id = $1 AND m.id = $2", "ASC")


async def by_id(db: Database, dialog_id: int, message_id: int) -> MessageRow | None:
    row = await db.fetchrow("messages.by_id", BY_ID_SQL, dialog_id, message_id)
    return _message(row) if row else None


async def find_visible(db: Database, reader_id: int, key: str) -> MessageRow | None:
    """The message with this key in any dialog of the reader (for forwarding)."""
    row = await db.fetchrow("messages.find_visible", FIND_VISIBLE_SQL, reader_id, key)
    return _message(row) if row else None


async def single(db: Database, dialog_id: int, reader_id: int, key: str) -> MessageRow | None:
    row = await db.fetchrow("messages.single", SINGLE_SQL, dialog_id, reader_id, key)
    return _message(row) if row else None


async def tombstones(db: Database, dialog_id: int, *, since: datetime | None, take: int, skip: int) -> list[MessageRow]:
    """Messages deleted for everyone (whoever hid them before)."""
    if since is None:
        rows = await db.fetch("messages.deleted", DELETED_NEWEST_SQL, dialog_id, take, skip)
    else:
        rows = await db.fetch("messages.deleted_since", DELETED_SINCE_SQL, dialog_id, take, skip, since)
    return [_message(r) for r in rows]


# -- the dialog's media ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DialogMediaItem:
    key: str
    extension: str
    size: int
    message_key: str
    created_at: datetime


#: $1 dialog id, $2 reader, $3 take, $4 skip: media of visible messages, newest
#: message first, then in the message's display order.
DIALOG_MEDIA_SQL = f"""
SELECT mm.media_key AS key, md.extension, md.size, m.key AS message_key, m.created_at
FROM message_media mm
JOIN messages m ON m.dialog_id = mm.dialog_id AND m.id = mm.message_id
JOIN media md ON md.key = mm.media_key
WHERE mm.dialog_id = $1 AND {_VISIBLE}
ORDER BY mm.message_id DESC, mm.position, mm.media_key
LIMIT $3 OFFSET $4
"""


async def dialog_media(db: Database, dialog_id: int, reader_id: int, *, take: int, skip: int) -> list[DialogMediaItem]:
    rows = await db.fetch("messages.dialog_media", DIALOG_MEDIA_SQL, dialog_id, reader_id, take, skip)
    return [DialogMediaItem(**dict(r)) for r in rows]
