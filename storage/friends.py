"""Friends (directed contact rows) and the block list.

A request from A to B is the row (A, B, 'requested') carrying A's private note;
a friendship is the two rows (A, B, 'friend') and (B, A, 'friend'), each with
its owner's note.  Every change of the relation between two users runs in a
transaction that first takes ``lock_pair``: two users asking each other at the
same moment, or one blocking while the other asks, are serialized, so the pair
always ends in one of the legal states and never in half of one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from .db import Database

REQUESTED = "requested"
FRIEND = "friend"

# A fixed seed keeps these advisory-lock keys apart from any other use of
# advisory locks (the migration lock is a small constant).
_PAIR_LOCK_SEED = 0x5E55F12E


async def blocked_between(db: Database, a: int, b: int) -> bool:
    """True if either user has blocked the other."""
    return await db.fetchval(
        "friends.blocked_between",
        "SELECT EXISTS (SELECT 1 FROM blocks WHERE (blocker_id = $1 AND blocked_id = $2)"
        " OR (blocker_id = $2 AND blocked_id = $1))",
        a,
        b,
    )


BLOCKED_AMONG_SQL = """
SELECT coalesce(array_agg(u.id ORDER BY u.n), '{}')
FROM unnest($2::bigint[]) WITH ORDINALITY AS u(id, n)
WHERE EXISTS (SELECT 1 FROM blocks b
              WHERE (b.blocker_id = $1 AND b.blocked_id = u.id) OR (b.blocker_id = u.id AND b.blocked_id = $1))
"""


async def blocked_among(db: Database, user_id: int, others: Sequence[int]) -> list[int]:
    """Those of ``others`` with a block between them and ``user_id``, either
    way, in the order given."""
    if not others:
        return []
    return list(await db.fetchval("friends.blocked_among", BLOCKED_AMONG_SQL, user_id, list(others)))


@dataclass(frozen=True, slots=True)
class Relation:
    """Everything between the caller (``me``) and another user, read under the pair lock."""

    user_exists: bool
    i_blocked: bool
    they_blocked: bool
    mine: str | None  # state of my row towards them
    theirs: str | None  # state of their row towards me

    @property
    def blocked(self) -> bool:
        return self.i_blocked or self.they_blocked

    @property
    def friends(self) -> bool:
        return self.mine == FRIEND and self.theirs == FRIEND

    @property
    def outgoing(self) -> bool:
        """I asked them and they have not answered."""
        return self.mine == REQUESTED

    @property
    def incoming(self) -> bool:
        """They asked me and I have not answered."""
        return self.theirs == REQUESTED


async def lock_pair(db: Database, a: int, b: int) -> None:
    """Serialize every change between users a and b until the transaction ends.

    Row locks cannot do this alone: the interesting case is two inserts of rows
    that do not exist yet.  The key is the same whichever side asks first."""
    await db.execute(
        "friends.lock_pair",
        "SELECT pg_advisory_xact_lock(hashtextextended(least($1::bigint, $2::bigint)::text"
        " || ':' || greatest($1::bigint, $2::bigint)::text, $3))",
        a,
        b,
        _PAIR_LOCK_SEED,
    )


async def locked_relation(db: Database, me: int, other: int) -> Relation:
    """Take the pair lock, then read the relation: what the caller sees stays
    true until its transaction commits."""
    await lock_pair(db, me, other)
    row = await db.fetchrow(
        "friends.locked_relation",
        "SELECT EXISTS (SELECT 1 FROM users WHERE id = $2) AS user_exists,"
        " EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $1 AND blocked_id = $2) AS i_blocked,"
        " EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $2 AND blocked_id = $1) AS they_blocked,"
        " (SELECT state FROM contacts WHERE owner_id = $1 AND peer_id = $2) AS mine,"
        " (SELECT state FROM contacts WHERE owner_id = $2 AND peer_id = $1) AS theirs",
        me,
        other,
    )
    assert row is not None  # a SELECT without FROM always returns one row
    return Relation(**dict(row))


async def add_request(db: Database, owner: int, peer: int, note: str) -> None:
    """A friend request from ``owner`` to ``peer``; the caller checked there is no row."""
    await db.execute(
        "friends.add_request",
        "INSERT INTO contacts (owner_id, peer_id, state, note) VALUES ($1, $2, 'requested', $3)",
        owner,
        peer,
        note,
    )


async def make_friends(db: Database, me: int, requester: int, note: str) -> None:
    """Turn ``requester``'s pending request to ``me`` into a friendship.

    The requester keeps the note they wrote with the request; ``note`` is mine.
    ``created_at`` restarts on both rows: lists are ordered by how long a
    relation has been in its current state."""
    updated = await db.execute(
        "friends.make_friends",
        "UPDATE contacts SET state = 'friend', created_at = now(), updated_at = now()"
        " WHERE owner_id = $1 AND peer_id = $2 AND state = 'requested'",
        requester,
        me,
    )
    if updated != "UPDATE 1":
        raise RuntimeError(f"no pending request from {requester} to {me} under the pair lock")
    await db.execute(
        "friends.make_friends",
        "INSERT INTO contacts (owner_id, peer_id, state, note) VALUES ($1, $2, 'friend', $3)"
        " ON CONFLICT (owner_id, peer_id) DO UPDATE"
        " SET state = 'friend', note = EXCLUDED.note, created_at = now(), updated_at = now()",
        me,
        requester,
        note,
    )


async def delete_request(db: Database, owner: int, peer: int) -> bool:
    """Withdraw ``owner``'s pending request to ``peer``; False if there was none."""
    status = await db.execute(
        "friends.delete_request",
        "DELETE FROM contacts WHERE owner_id = $1 AND peer_id = $2 AND state = 'requested'", owner, peer
    )
    return status == "DELETE 1"


async def remove_friendship(db: Database, a: int, b: int) -> bool:
    """Delete both friend rows; False if they were not friends."""
    status = await db.execute(
        "friends.remove_friendship",
        "DELETE FROM contacts WHERE state = 'friend'"
        " AND ((owner_id = $1 AND peer_id = $2) OR (owner_id = $2 AND peer_id = $1))",
        a,
        b,
    )
    return status != "DELETE 0"


async def drop_contacts(db: Database, a: int, b: int) -> None:
    """Forget any friendship or pending request between a and b, both ways."""
    await db.execute(
        "friends.drop_contacts",
        "DELETE FROM contacts WHERE (owner_id = $1 AND peer_id = $2) OR (owner_id = $2 AND peer_id = $1)", a, b
    )


async def set_note(db: Database, owner: int, peer: int, note: str) -> bool:
    """Change ``owner``'s private note on a friend or on their own pending
    request; False if ``owner`` has no row towards ``peer``.  One statement, so
    no pair lock: it changes no state."""
    status = await db.execute(
        "friends.set_note",
        "UPDATE contacts SET note = $3, updated_at = now() WHERE owner_id = $1 AND peer_id = $2",
        owner,
        peer,
        note,
    )
    return status == "UPDATE 1"


async def add_block(db: Database, blocker: int, blocked: int) -> bool:
    """Block; False if already blocked."""
    status = await db.execute(
        "friends.add_block",
        "INSERT INTO blocks (blocker_id, blocked_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", blocker, blocked
    )
    return status == "INSERT 0 1"


async def remove_block(db: Database, blocker: int, blocked: int) -> bool:
    """Unblock (inside the caller's transaction); False if not blocked."""
    status = await db.execute("friends.remove_block", "DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2", blocker, blocked)
    return status == "DELETE 1"


# -- lists -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Contact:
    """One entry of a friends, requests or block list."""

    id: int
    nickname: str
    photo_key: str | None
    note: str


# Every list is ordered oldest first, then by user id: a page boundary never
# moves when new entries arrive, because they go to the end.
_FRIENDS_SQL = (
    "SELECT u.id, u.nickname, u.photo_key, c.note"
    " FROM contacts c JOIN users u ON u.id = c.peer_id"
    " WHERE c.owner_id = $1 AND c.state = $2"
    " ORDER BY c.created_at, c.peer_id LIMIT $3 OFFSET $4"
)
_INCOMING_SQL = (
    "SELECT u.id, u.nickname, u.photo_key, '' AS note"
    " FROM contacts c JOIN users u ON u.id = c.owner_id"
    " WHERE c.peer_id = $1 AND c.state = 'requested'"
    " ORDER BY c.created_at, c.owner_id LIMIT $2 OFFSET $3"
)
_BLOCKS_SQL = (
    "SELECT u.id, u.nickname, u.photo_key, '' AS note"
    " FROM blocks b JOIN users u ON u.id = b.blocked_id"
    " WHERE b.blocker_id = $1"
    " ORDER BY b.created_at, b.blocked_id LIMIT $2 OFFSET $3"
)


def _contacts(rows: list[asyncpg.Record]) -> list[Contact]:
    return [Contact(**dict(row)) for row in rows]


async def list_friends(db: Database, user_id: int, take: int, skip: int) -> list[Contact]:
    """My friends, with my note on each."""
    return _contacts(await db.fetch("friends.list_friends", _FRIENDS_SQL, user_id, FRIEND, take, skip))


async def list_outgoing(db: Database, user_id: int, take: int, skip: int) -> list[Contact]:
    """Users I asked who have not answered, with the note I wrote."""
    return _contacts(await db.fetch("friends.list_outgoing", _FRIENDS_SQL, user_id, REQUESTED, take, skip))


async def list_incoming(db: Database, user_id: int, take: int, skip: int) -> list[Contact]:
    """Users who asked me.  Their notes are theirs: the note is always empty."""
    return _contacts(await db.fetch("friends.list_incoming", _INCOMING_SQL, user_id, take, skip))


async def list_blocked(db: Database, user_id: int, take: int, skip: int) -> list[Contact]:
    """Users I blocked (not those who blocked me: that is never revealed)."""
    return _contacts(await db.fetch("friends.list_blocked", _BLOCKS_SQL, user_id, take, skip))
