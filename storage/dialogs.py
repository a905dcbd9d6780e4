"""Dialogs and their members.

Every lookup by dialog key joins the caller's membership in the same query, so
"is this a dialog I may see?" costs one indexed round trip (dialogs.key is
unique, dialog_members is keyed by (dialog_id, user_id)).  The SQL lives in
module constants so the scale test can EXPLAIN exactly what runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from .db import Database
from .planning import one_key

OWNER = "owner"
ADMIN = "admin"
MEMBER = "member"
MANAGERS = (OWNER, ADMIN)

_DIALOG_COLUMNS = "d.id, d.key, d.name, d.private, d.photo_key, d.owner_id, d.created_at, d.updated_at, d.last_message_at"


@dataclass(frozen=True, slots=True)
class Dialog:
    id: int
    key: str
    name: str
    private: bool
    photo_key: str | None
    owner_id: int | None
    created_at: datetime
    updated_at: datetime
    last_message_at: datetime | None


@dataclass(frozen=True, slots=True)
class Access:
    """A dialog and the caller's role in it (``None``: not a member)."""

    dialog: Dialog
    role: str | None

    @property
    def is_member(self) -> bool:
        return self.role is not None

    @property
    def is_manager(self) -> bool:
        return self.role in MANAGERS


@dataclass(frozen=True, slots=True)
class DialogItem:
    """One line of "my dialogs"."""

    key: str
    name: str
    photo_key: str | None
    private: bool
    role: str
    created_at: datetime
    last_message_at: datetime | None
    unread: int = 0


@dataclass(frozen=True, slots=True)
class Member:
    user_id: int
    role: str


def _dialog(row) -> Dialog:
    return Dialog(**{k: row[k] for k in Dialog.__slots__})


# -- lookups ------------------------------------------------------------------------

#: A dialog by key with the caller's role; role is NULL for a non-member.
ACCESS_SQL = f"""
SELECT {_DIALOG_COLUMNS}, dm.role
FROM dialogs d
LEFT JOIN dialog_members dm ON dm.dialog_id = d.id AND dm.user_id = $2
WHERE d.key = $1
"""

#: The membership check of every request about a dialog's content.
MEMBERSHIP_SQL = """
SELECT d.id, dm.role
FROM dialogs d
JOIN dialog_members dm ON dm.dialog_id = d.id AND dm.user_id = $2
WHERE d.key = $1
"""


async def access(db: Database, key: str, user_id: int) -> Access | None:
    """The dialog ``key`` and the caller's role, or None if no such dialog."""
    row = await db.fetchrow("dialogs.access", ACCESS_SQL, key, user_id)
    return Access(_dialog(row), row["role"]) if row else None


# A fixed seed keeps these advisory-lock keys apart from other uses (friends' pair lock).
_DIALOG_LOCK_SEED = 0x5E55D1A1

#: The dialog's management lock, held until the transaction ends.  An advisory
#: lock, not the dialog row's: a batch of sends updates that row
#: (``last_message_at``) and locks its recipients' event counters in an order
#: of its own, and a management transaction holding the row while it waits
#: for a counter would deadlock with it.
LOCK_DIALOG_SQL = """
SELECT pg_advisory_xact_lock(hashtextextended('dialog:' || d.id::text, $2)) IS NOT NULL
FROM dialogs d WHERE d.key = $1
"""


async def lock_access(db: Database, key: str, user_id: int) -> Access | None:
    """``access`` for a change: inside the caller's transaction, take the
    dialog's management lock first, then read the dialog and the caller's role.

    Every change of a dialog's settings or members goes through here, so they
    run one at a time per dialog, and each decides who may do it from rows
    that cannot change under it until it commits: a kick that commits first
    is seen (the read is a new statement, after the lock was granted), and a
    kick that comes second waits for this change to commit."""
    if await db.fetchval("dialogs.lock", LOCK_DIALOG_SQL, key, _DIALOG_LOCK_SEED) is None:
        return None
    return await access(db, key, user_id)


async def membership(db: Database, key: str, user_id: int) -> tuple[int, str] | None:
    """(dialog id, role) if ``user_id`` is a member of dialog ``key``."""
    row = await db.fetchrow("dialogs.membership", MEMBERSHIP_SQL, key, user_id)
    return (row["id"], row["role"]) if row else None


MEMBERS_SQL = """
SELECT user_id, role FROM dialog_members WHERE dialog_id = $1 ORDER BY joined_at, user_id
"""


async def members_among(db: Database, dialog_ids: list[int], user_ids: list[int]) -> list[int]:
    """Which of ``user_ids`` are members of any of ``dialog_ids`` (one index
    lookup per pair: a node asks about the users it serves, never reads a
    large dialog's whole member list)."""
    rows = await db.fetch(
        "dialogs.members_among",
        "SELECT DISTINCT user_id FROM dialog_members WHERE dialog_id = ANY($1::bigint[]) AND user_id = ANY($2::bigint[])",
        dialog_ids, user_ids,
    )
    return [r["user_id"] for r in rows]


async def members(db: Database, dialog_id: int) -> list[Member]:
    """Members in the order they joined (the creator first)."""
    return [Member(r["user_id"], r["role"]) for r in await db.fetch("dialogs.members", MEMBERS_SQL, dialog_id)]


ROLES_OF_SQL = """
SELECT user_id, role FROM dialog_members WHERE dialog_id = $1 AND user_id = ANY($2::bigint[])
"""


async def roles_of(db: Database, dialog_id: int, user_ids: Sequence[int]) -> dict[int, str]:
    """The roles of those of ``user_ids`` who are members."""
    rows = await db.fetch("dialogs.roles_of", ROLES_OF_SQL, dialog_id, list(user_ids))
    return {r["user_id"]: r["role"] for r in rows}


UNKNOWN_USERS_SQL = """
SELECT coalesce(array_agg(u.id ORDER BY u.n), '{}')
FROM unnest($1::bigint[]) WITH ORDINALITY AS u(id, n)
WHERE NOT EXISTS (SELECT 1 FROM users WHERE users.id = u.id)
"""


async def unknown_users(db: Database, user_ids: Sequence[int]) -> list[int]:
    """Those of ``user_ids`` that name no account, in the order given."""
    if not user_ids:
        return []
    return list(await db.fetchval("dialogs.unknown_users", UNKNOWN_USERS_SQL, list(user_ids)))


PUBLIC_PHOTO_SQL = """
SELECT EXISTS (SELECT 1 FROM dialogs WHERE photo_key = $1)
    OR EXISTS (SELECT 1 FROM users WHERE photo_key = $1)
"""


async def is_public_photo(db: Database, media_key: str) -> bool:
    """Already shown to others as a dialog or profile photo."""
    return await db.fetchval("dialogs.is_public_photo", PUBLIC_PHOTO_SQL, media_key)


# -- changes --------------------------------------------------------------------------

#: The dialog and all its first members in one statement: never a dialog without its owner.
CREATE_SQL = f"""
WITH d AS (
    INSERT INTO dialogs (key, name, private, photo_key, owner_id)
    VALUES ($1, $2, $3, $4, $5)
    RETURNING *
), owner AS (
    INSERT INTO dialog_members (dialog_id, user_id, role)
    SELECT d.id, $5, 'owner' FROM d
), others AS (
    INSERT INTO dialog_members (dialog_id, user_id, role)
    SELECT d.id, u.id, 'member' FROM d, unnest($6::bigint[]) AS u(id)
    WHERE u.id <> $5
    ON CONFLICT DO NOTHING
)
SELECT {_DIALOG_COLUMNS} FROM d
"""


async def create_dialog(
    db: Database,
    *,
    key: str,
    name: str,
    private: bool,
    photo_key: str | None,
    owner_id: int,
    members: Sequence[int],
) -> Dialog:
    row = await db.fetchrow("dialogs.create", CREATE_SQL, key, name, private, photo_key, owner_id, list(members))
    return _dialog(row)


UPDATE_SQL = """
UPDATE dialogs SET
    name = coalesce($2, name),
    private = coalesce($3, private),
    photo_key = coalesce($4, photo_key),
    updated_at = now()
WHERE id = $1
"""

ADD_MEMBERS_SQL = """
INSERT INTO dialog_members (dialog_id, user_id, role)
SELECT $1, u.id, CASE WHEN u.id = ANY($3::bigint[]) THEN 'admin' ELSE 'member' END
FROM unnest($2::bigint[]) AS u(id)
ON CONFLICT DO NOTHING
"""

PROMOTE_SQL = """
UPDATE dialog_members SET role = 'admin'
WHERE dialog_id = $1 AND user_id = ANY($2::bigint[]) AND role = 'member'
"""


async def change_members(db: Database, dialog_id: int, *, add_members: Sequence[int] = (), admins: Sequence[int] = ()) -> None:
    """The member part of one ``ChangeDialog``: new members (those listed in
    ``admins`` join as admins) and new admins."""
    if add_members:
        await db.execute("dialogs.add_members", ADD_MEMBERS_SQL, dialog_id, list(add_members), list(admins))
    if admins:
        await db.execute("dialogs.promote", PROMOTE_SQL, dialog_id, list(admins))


async def change_settings(
    db: Database,
    dialog_id: int,
    *,
    name: str | None = None,
    private: bool | None = None,
    photo_key: str | None = None,
) -> None:
    """The dialog row's part of one ``ChangeDialog`` (``None``: unchanged);
    ``updated_at`` moves even when nothing else does, so that "dialogs
    changed since" finds a dialog whose members changed.

    Call it last in the transaction, after the events are appended: a batch
    of sends locks its recipients' event counters first and the dialog row
    after, and a transaction holding the dialog row while it waits for a
    counter would deadlock with it."""
    await db.execute("dialogs.change", UPDATE_SQL, dialog_id, name, private, photo_key)


REMOVE_MEMBER_SQL = """
DELETE FROM dialog_members WHERE dialog_id = $1 AND user_id = $2 RETURNING role
"""

#: When the owner leaves, the longest-standing admin (else member) inherits
#: the dialog; returns the heir (none when nobody is left).
PROMOTE_HEIR_SQL = """
WITH heir AS (
    SELECT user_id FROM dialog_members WHERE dialog_id = $1
    ORDER BY role = 'admin' DESC, joined_at, user_id
    LIMIT 1
)
UPDATE dialog_members SET role = 'owner'
FROM heir WHERE dialog_members.dialog_id = $1 AND dialog_members.user_id = heir.user_id
RETURNING dialog_members.user_id
"""

SET_OWNER_SQL = "UPDATE dialogs SET owner_id = $2, updated_at = now() WHERE id = $1"


async def remove_member(db: Database, dialog_id: int, user_id: int) -> Removed | None:
    """Remove a member (kick or leave); None if they were not a member.  When
    the owner leaves, the heir becomes owner at once; the dialog row learns
    it from ``set_owner``, which the caller runs last in the transaction
    (see ``change_settings`` for why the dialog row comes last)."""
    role = await db.fetchval("dialogs.remove_member", REMOVE_MEMBER_SQL, dialog_id, user_id)
    if role is None:
        return None
    heir = await db.fetchval("dialogs.promote_heir", PROMOTE_HEIR_SQL, dialog_id) if role == OWNER else None
    return Removed(role, heir)


@dataclass(frozen=True, slots=True)
class Removed:
    """A removed member's role, and who inherited the dialog if they owned it."""

    role: str
    heir: int | None = None

    @property
    def new_owner(self) -> bool:
        return self.role == OWNER


async def set_owner(db: Database, dialog_id: int, owner_id: int | None) -> None:
    await db.execute("dialogs.set_owner", SET_OWNER_SQL, dialog_id, owner_id)


# -- listings -------------------------------------------------------------------------

_ITEM_COLUMNS = (
    "d.id AS dialog_id, d.key, d.name, d.photo_key, d.private, dm.role, d.created_at, d.last_message_at,"
    " dm.last_read_message_id, coalesce(d.last_message_at, d.created_at) AS activity"
)
#: Unread = others' live messages after my read mark, counted for the page's
#: dialogs only and capped (a client shows "99+" rather than waiting).
MAX_UNREAD = 99


def _with_unread(inner: str) -> str:
    return f"""
SELECT p.key, p.name, p.photo_key, p.private, p.role, p.created_at, p.last_message_at, u.unread
FROM ({inner}) AS p
LEFT JOIN LATERAL (
    SELECT count(*) AS unread FROM (
        SELECT 1 FROM messages m
        WHERE {one_key("m.dialog_id", "p.dialog_id")} AND m.id > p.last_read_message_id
          AND m.author_id IS DISTINCT FROM $1 AND m.deleted_at IS NULL
          AND NOT EXISTS (SELECT 1 FROM message_hidden h
                          WHERE h.dialog_id = m.dialog_id AND h.user_id = $1 AND h.message_id = m.id)
        ORDER BY m.dialog_id, m.id  -- with one_key: a forward scan from the read mark that stops at the cap
        LIMIT {MAX_UNREAD}
    ) AS x
) AS u ON true
ORDER BY p.activity DESC, p.dialog_id DESC
"""


#: My dialogs, most recent activity first (a dialog without messages counts from its creation).
MY_DIALOGS_SQL = _with_unread(f"""
SELECT {_ITEM_COLUMNS}
FROM dialog_members dm
JOIN dialogs d ON d.id = dm.dialog_id
WHERE dm.user_id = $1
ORDER BY coalesce(d.last_message_at, d.created_at) DESC, d.id DESC
LIMIT $2 OFFSET $3
""")

#: My dialogs with anything new after $4: a message, a change (name, photo,
#: privacy, owner), or my joining it.
MY_DIALOGS_SINCE_SQL = _with_unread(f"""
SELECT {_ITEM_COLUMNS}
FROM dialog_members dm
JOIN dialogs d ON d.id = dm.dialog_id
WHERE dm.user_id = $1
  AND (d.last_message_at > $4 OR d.updated_at > $4 OR dm.joined_at > $4)
ORDER BY coalesce(d.last_message_at, d.created_at) DESC, d.id DESC
LIMIT $2 OFFSET $3
""")

#: Move my read mark forward to message $3 (never back); returns its id.
MARK_READ_SQL = """
WITH target AS (SELECT id FROM messages WHERE dialog_id = $1 AND key = $3 AND deleted_at IS NULL)
UPDATE dialog_members dm SET last_read_message_id = GREATEST(dm.last_read_message_id, target.id)
FROM target WHERE dm.dialog_id = $1 AND dm.user_id = $2
RETURNING target.id
"""

async def mark_read(db: Database, dialog_id: int, user_id: int, message_key: str) -> int | None:
    """None if the message is not (or no longer) in the dialog."""
    return await db.fetchval("dialogs.mark_read", MARK_READ_SQL, dialog_id, user_id, message_key)


#: $1 dialog key, $2 reader: membership and read marks in one round trip.
READER_SQL = """
SELECT d.id, dm.last_read_message_id AS mine,
       coalesce((SELECT o.last_read_message_id FROM dialog_members o
                 WHERE o.dialog_id = d.id AND o.user_id <> $2
                 ORDER BY o.last_read_message_id DESC LIMIT 1), 0) AS others
FROM dialogs d
JOIN dialog_members dm ON dm.dialog_id = d.id AND dm.user_id = $2
WHERE d.key = $1
"""


@dataclass(frozen=True, slots=True)
class Reader:
    """A member about to read a dialog: its id, the newest message id the
    member has read (``mine``) and the newest any other member has read
    (``others``): a page marks others' messages read up to ``mine`` and the
    member's own up to ``others``."""

    dialog_id: int
    mine: int
    others: int


async def reader(db: Database, key: str, user_id: int) -> Reader | None:
    """None when ``user_id`` is not a member of dialog ``key`` (or there is none)."""
    row = await db.fetchrow("dialogs.reader", READER_SQL, key, user_id)
    return Reader(row["id"], row["mine"], row["others"]) if row else None


#: ``READER_SQL`` plus whether the member has hidden any message of the dialog
#: (one index probe): a page shared by every member is exact for those who
#: have not.
READER_HIDES_SQL = f"""
SELECT r.id, r.mine, r.others,
       EXISTS (SELECT 1 FROM message_hidden h WHERE h.dialog_id = r.id AND h.user_id = $2) AS hides
FROM ({READER_SQL}) AS r
"""


async def reader_with_hides(db: Database, key: str, user_id: int) -> tuple[Reader, bool] | None:
    """``reader``, and whether the member has hidden messages in the dialog."""
    row = await db.fetchrow("dialogs.reader_with_hides", READER_HIDES_SQL, key, user_id)
    return (Reader(row["id"], row["mine"], row["others"]), row["hides"]) if row else None


async def my_dialogs(db: Database, user_id: int, *, since: datetime | None, take: int, skip: int) -> list[DialogItem]:
    if since is None:
        rows = await db.fetch("dialogs.mine", MY_DIALOGS_SQL, user_id, take, skip)
    else:
        rows = await db.fetch("dialogs.mine_since", MY_DIALOGS_SINCE_SQL, user_id, take, skip, since)
    return [DialogItem(**dict(r)) for r in rows]
