"""Text search over messages and public dialog names.

Matching is a case-insensitive substring match, ``lower(text) LIKE lower($p)``
with ``$p`` an escaped ``%...%`` pattern (``protocol.requests.search.like_pattern``),
served by trigram GIN indexes on ``lower(content)`` and ``lower(name)``
(migration 0003).  lower() follows the database's Unicode collation, so
"ПРИВЕТ" finds "привет".  Deleted messages are not in the index and hidden
ones are filtered per caller.  The SQL lives in module constants so the scale
test can EXPLAIN exactly what runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .db import Database

_VISIBLE_MATCH = """
m.deleted_at IS NULL AND lower(m.content) LIKE lower($2)
AND NOT EXISTS (
    SELECT 1 FROM message_hidden h
    WHERE h.dialog_id = m.dialog_id AND h.user_id = $1 AND h.message_id = m.id
)"""

#: $1 user, $2 pattern, $3 take, $4 skip: my dialogs whose name or a visible
#: message matches, most recent activity first.  The matching dialog ids are
#: found first (my memberships by index, messages by the trigram index or per
#: dialog), and only those dialogs are then read by primary key.
MY_DIALOGS_SQL = f"""
WITH mine AS (
    SELECT dialog_id FROM dialog_members WHERE user_id = $1
)
SELECT d.key
FROM dialogs d
WHERE d.id IN (
    SELECT n.id FROM mine JOIN dialogs n ON n.id = mine.dialog_id
    WHERE lower(n.name) LIKE lower($2)
    UNION
    SELECT m.dialog_id FROM messages m
    WHERE m.dialog_id IN (SELECT dialog_id FROM mine) AND {_VISIBLE_MATCH}
)
ORDER BY coalesce(d.last_message_at, d.created_at) DESC, d.id DESC
LIMIT $3 OFFSET $4
"""

#: $1 user, $2 pattern, $3 take, $4 skip: public dialogs by name that I am not in.
PUBLIC_DIALOGS_SQL = """
SELECT d.key, d.name, d.photo_key
FROM dialogs d
WHERE NOT d.private AND lower(d.name) LIKE lower($2)
  AND NOT EXISTS (SELECT 1 FROM dialog_members dm WHERE dm.dialog_id = d.id AND dm.user_id = $1)
ORDER BY coalesce(d.last_message_at, d.created_at) DESC, d.id DESC
LIMIT $3 OFFSET $4
"""

#: $1 user, $2 dialog keys: those of the keys that are dialogs I am a member of.
MY_DIALOG_IDS_SQL = """
SELECT d.id
FROM dialogs d
JOIN dialog_members dm ON dm.dialog_id = d.id AND dm.user_id = $1
WHERE d.key = ANY($2::text[])
"""

#: $1 user, $2 pattern, $3 take, $4 skip, $5 dialog ids: matching visible
#: messages, newest first.
IN_DIALOGS_SQL = f"""
SELECT m.key, d.key AS dialog_key
FROM messages m
JOIN dialogs d ON d.id = m.dialog_id
WHERE m.dialog_id = ANY($5::bigint[]) AND {_VISIBLE_MATCH}
ORDER BY m.id DESC
LIMIT $3 OFFSET $4
"""


@dataclass(frozen=True, slots=True)
class PublicDialog:
    key: str
    name: str
    photo_key: str | None


@dataclass(frozen=True, slots=True)
class Hit:
    key: str
    dialog_key: str


async def my_dialogs(db: Database, user_id: int, pattern: str, *, take: int, skip: int) -> list[str]:
    rows = await db.fetch("search.my_dialogs", MY_DIALOGS_SQL, user_id, pattern, take, skip)
    return [r["key"] for r in rows]


async def public_dialogs(db: Database, user_id: int, pattern: str, *, take: int, skip: int) -> list[PublicDialog]:
    rows = await db.fetch("search.public_dialogs", PUBLIC_DIALOGS_SQL, user_id, pattern, take, skip)
    return [PublicDialog(r["key"], r["name"], r["photo_key"]) for r in rows]


async def my_dialog_ids(db: Database, user_id: int, keys: Sequence[str]) -> list[int]:
    rows = await db.fetch("search.my_dialog_ids", MY_DIALOG_IDS_SQL, user_id, list(keys))
    return [r["id"] for r in rows]


async def in_dialogs(
    db: Database, user_id: int, dialog_ids: Sequence[int], pattern: str, *, take: int, skip: int
) -> list[Hit]:
    rows = await db.fetch("search.in_dialogs", IN_DIALOGS_SQL, user_id, pattern, take, skip, list(dialog_ids))
    return [Hit(r["key"], r["dialog_key"]) for r in rows]
