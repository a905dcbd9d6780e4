"""Messages, their media links, tombstones and per-user hiding.

Sending is the hot path: ``ADD_SQL`` is one statement (one round trip, one
implicit transaction) that checks membership, the direct-message block rule and
media ownership, inserts the message and its media links and moves the
dialog's ``last_message_at``.  A statement of this shape can later be batched
(group commit) without changing its meaning.

Edits, deletes and hides are one statement each as well; reads take two
(membership, then the page).  The SQL lives in module constants so the scale
test can EXPLAIN exactly what runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from .db import Database

# -- sending --------------------------------------------------------------------------

#: $1 dialog key, $2 author, $3 message key, $4 content, $5 media keys, $6 positions,
#: $7 created_at, $8 the NewMessage event payload (JSON), $9 media keys the
#: author may attach without owning them (those of a forwarded message),
#: $10 forwarded message key or NULL, $11 important.
#: The event goes to every member's log in the same statement: a message is
#: never stored without its event, and the recipients' sequence rows are
#: locked in user id order so concurrent sends cannot deadlock on them.
ADD_SQL = """
WITH me AS (
    SELECT dm.dialog_id
    FROM dialogs d
    JOIN dialog_members dm ON dm.dialog_id = d.id AND dm.user_id = $2
    WHERE d.key = $1
), pair AS (
    -- up to three members: exactly two means a direct conversation
    SELECT array_agg(o.user_id) AS ids
    FROM (SELECT o.user_id FROM me JOIN dialog_members o ON o.dialog_id = me.dialog_id LIMIT 3) AS o
), blocked AS (
    SELECT coalesce(cardinality(pair.ids) = 2 AND EXISTS (
        SELECT 1 FROM blocks b
        WHERE (b.blocker_id = pair.ids[1] AND b.blocked_id = pair.ids[2])
           OR (b.blocker_id = pair.ids[2] AND b.blocked_id = pair.ids[1])
    ), false) AS yes
    FROM pair
), missing AS (
    -- media that do not exist or are not the author's own uploads
    SELECT coalesce(array_agg(u.k ORDER BY u.n), '{}') AS keys
    FROM unnest($5::text[]) WITH ORDINALITY AS u(k, n)
    WHERE NOT EXISTS (SELECT 1 FROM media WHERE media.key = u.k AND (media.owner_id = $2 OR media.key = ANY($9::text[])))
), ins AS (
    INSERT INTO messages (dialog_id, key, author_id, content, created_at, forwarded_key, important)
    SELECT me.dialog_id, $3, $2, $4, $7, $10, $11
    FROM me, blocked, missing
    WHERE NOT blocked.yes AND cardinality(missing.keys) = 0
    ON CONFLICT (dialog_id, key) DO NOTHING
    RETURNING dialog_id, id, author_id, created_at
), linked AS (
    INSERT INTO message_media (dialog_id, message_id, media_key, position)
    SELECT ins.dialog_id, ins.id, u.k, u.p
    FROM ins, unnest($5::text[], $6::int[]) AS u(k, p)
), touched AS (
    UPDATE dialogs SET last_message_at = ins.created_at
    FROM ins
    WHERE dialogs.id = ins.dialog_id
      AND (dialogs.last_message_at IS NULL OR dialogs.last_message_at < ins.created_at)
), recipients AS (
    SELECT s.user_id FROM ins
    JOIN dialog_members dm ON dm.dialog_id = ins.dialog_id
    JOIN user_event_seq s ON s.user_id = dm.user_id
    ORDER BY s.user_id
    FOR UPDATE OF s
), bumped AS (
    UPDATE user_event_seq s SET last_seq = s.last_seq + 1
    FROM recipients r WHERE s.user_id = r.user_id
    RETURNING s.user_id, s.last_seq
), evs AS (
    INSERT INTO events (user_id, seq, kind, payload, created_at)
    SELECT user_id, last_seq, 'NewMessage', $8::jsonb, $7 FROM bumped
    RETURNING user_id, seq
)
SELECT me.dialog_id, blocked.yes AS blocked, missing.keys AS missing_media,
       ins.id AS new_id, coalesce(ins.author_id, earlier.author_id) AS author_id,
       (ins.id IS NOT NULL OR earlier.id IS NOT NULL) AS stored,
       (SELECT array_agg(user_id ORDER BY user_id) FROM evs) AS event_users,
       (SELECT array_agg(seq ORDER BY user_id) FROM evs) AS event_seqs
FROM me
CROSS JOIN blocked
CROSS JOIN missing
LEFT JOIN ins ON true
LEFT JOIN messages earlier ON ins.id IS NULL AND earlier.dialog_id = me.dialog_id AND earlier.key = $3
"""


@dataclass(frozen=True, slots=True)
class Sent:
    """What ``add_message`` did.  ``dialog_id`` None: not a member (or no such
    dialog).  ``created`` False with ``author_id`` set: the key was already
    used, by that author."""

    dialog_id: int | None
    blocked: bool = False
    missing_media: tuple[str, ...] = ()
    created: bool = False
    author_id: int | None = None
    events: tuple[tuple[int, int], ...] = ()  # (user id, seq) of the NewMessage events


async def add_message(
    db: Database,
    *,
    dialog_key: str,
    author_id: int,
    key: str,
    content: str,
    media: Sequence[str] = (),
    positions: Sequence[int] = (),
    created_at: datetime,
    event_payload: str,
    forwarded_media: Sequence[str] = (),
    forwarded_key: str | None = None,
    important: bool = False,
) -> Sent:
    """Send a message.  A key that is already in the dialog is not inserted
    again: the answer names the earlier message's author so a retried send is
    recognised (same author) and a foreign key refused (another author)."""
    for _ in range(3):
        row = await db.fetchrow(
            "messages.add", ADD_SQL, dialog_key, author_id, key, content, list(media), list(positions),
            created_at, event_payload, list(forwarded_media), forwarded_key, important,
        )
        if row is None:
            return Sent(None)
        if row["blocked"] or row["missing_media"]:
            return Sent(row["dialog_id"], blocked=row["blocked"], missing_media=tuple(row["missing_media"]))
        if row["stored"]:
            events = tuple(zip(row["event_users"] or (), row["event_seqs"] or (), strict=True))
            return Sent(row["dialog_id"], created=row["new_id"] is not None, author_id=row["author_id"], events=events)
        # The same key was being inserted concurrently and committed after this
        # statement's snapshot: the next statement sees it.
    raise RuntimeError("message key neither inserted nor found")


# -- edit, delete, hide ------------------------------------------------------------------

_TARGET = """
WITH me AS (
    SELECT dm.dialog_id, dm.role
    FROM dialogs d
    JOIN dialog_members dm ON dm.dialog_id = d.id AND dm.user_id = $2
    WHERE d.key = $1
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


@dataclass(frozen=True, slots=True)
class MessageRow:
    id: int
    key: str
    author_id: int | None
    content: str
    created_at: datetime
    updated_at: datetime | None
    deleted_at: datetime | None
    forwarded_key: str | None
    important: bool
    media: tuple[str, ...]
    positions: tuple[int, ...]


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
       m.forwarded_key, m.important, media.keys AS media, media.positions AS positions
FROM ({inner}) AS m
LEFT JOIN LATERAL (
    SELECT array_agg(mm.media_key ORDER BY mm.position, mm.media_key) AS keys,
           array_agg(mm.position ORDER BY mm.position, mm.media_key) AS positions
    FROM message_media mm
    WHERE mm.dialog_id = m.dialog_id AND mm.message_id = m.id
) AS media ON true
ORDER BY m.id {order}
"""


#: $1 dialog id, $2 reader, $3 take, $4 skip: the newest page, newest first.
PAGE_NEWEST_SQL = _with_media(
    f"SELECT * FROM messages m WHERE {_VISIBLE} ORDER BY m.id DESC LIMIT $3 OFFSET $4", "DESC"
)

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


def _message(row) -> MessageRow:
    return MessageRow(
        id=row["id"],
        key=row["key"],
        author_id=row["author_id"],
        content=row["content"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        deleted_at=row["deleted_at"],
        forwarded_key=row["forwarded_key"],
        important=row["important"],
        media=tuple(row["media"] or ()),
        positions=tuple(row["positions"] or ()),
    )


async def page(
    db: Database, dialog_id: int, reader_id: int, *, since: datetime | None, take: int, skip: int
) -> list[MessageRow]:
    """Visible messages (not deleted, not hidden by the reader)."""
    if since is None:
        rows = await db.fetch("messages.page", PAGE_NEWEST_SQL, dialog_id, reader_id, take, skip)
    else:
        rows = await db.fetch("messages.page_since", PAGE_SINCE_SQL, dialog_id, reader_id, take, skip, since)
    return [_message(r) for r in rows]


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
