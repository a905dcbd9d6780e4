"""The unit of work (server/changes.py) on a real PostgreSQL: an event is
logged exactly when its change commits, and told only after that commit.

The push hub here is a recorder of what it is handed and when: the subject is
the order the unit of work keeps (log in the transaction, hand over after the
commit, nothing on rollback), which the integration tests see only as "a push
arrived" or "none did".
"""

from __future__ import annotations

from typing import Any

import pytest

from protocol.events import Blocked, FriendRequest
from server.changes import Changes
from storage import event_log, users
from storage.db import Database
from storage.event_log import EventRow
from storage.migrate import migrate


class Recorder:
    """Stands where the push hub stands: keeps what ``deliver`` was given."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.delivered: list[list[EventRow]] = []

    def deliver(self, rows: list[EventRow]) -> None:
        self.delivered.append(list(rows))

    def deliver_dialog(self, rows: list[Any]) -> None:
        assert rows == [], "no large dialog here"

    def typing(self, user_ids: list[int], body: dict[str, Any], *, origin: Any = None) -> None:
        raise AssertionError("not used here")


class Refused(Exception):
    pass


@pytest.fixture
async def setup(new_database):
    db = await Database.connect(new_database(), min_size=1, max_size=4)
    async with db.connection("migrate") as conn:
        await migrate(conn)
    async with db.atomic("users") as tx:
        alice = await users.create_user(tx, "alice", "alice@example.org", "x")
        bob = await users.create_user(tx, "bob", "bob@example.org", "x")
    hub = Recorder(db)
    try:
        yield db, hub, Changes(db, hub), alice.id, bob.id
    finally:
        await db.close()


async def test_events_are_handed_over_after_the_commit_with_their_seqs(setup) -> None:
    db, hub, changes, alice, bob = setup
    order: list[str] = []

    async def after() -> None:
        # By now the change is visible to any other connection, and the hub has it.
        order.append(f"after: log {await event_log.last_seq(db, bob)}, delivered {len(hub.delivered)}")

    async with changes("test.request") as ch:
        await ch.emit([alice, bob], FriendRequest(alice, bob))
        await ch.emit([alice], Blocked(bob))
        ch.after_commit(after)
        assert hub.delivered == []  # nothing is told while the transaction is open
        assert await event_log.last_seq(db, bob) == 0  # and nobody else sees the events yet

    assert order == ["after: log 1, delivered 1"]
    [rows] = hub.delivered
    assert [(r.user_id, r.seq, r.kind, r.payload) for r in rows] == [
        (alice, 1, "FriendRequest", {"From": alice, "To": bob}),
        (bob, 1, "FriendRequest", {"From": alice, "To": bob}),
        (alice, 2, "Blocked", {"Id": bob}),
    ]
    page = await event_log.read_after(db, alice, 0, 10)
    assert [(r.seq, r.kind) for r in page.rows] == [(1, "FriendRequest"), (2, "Blocked")]


async def test_a_refusal_after_an_emit_logs_nothing_and_tells_nobody(setup) -> None:
    db, hub, changes, alice, bob = setup
    ran: list[str] = []

    async def after() -> None:
        ran.append("after")

    with pytest.raises(Refused):
        async with changes("test.refused") as ch:
            await ch.emit([alice, bob], FriendRequest(alice, bob))
            ch.after_commit(after)
            raise Refused

    assert hub.delivered == [] and ran == []
    assert await event_log.last_seq(db, alice) == 0 and await event_log.last_seq(db, bob) == 0
    # The counters were rolled back too: the next event is seq 1, no gap.
    async with changes("test.next") as ch:
        await ch.emit([bob], Blocked(alice))
    assert [(r.user_id, r.seq) for r in hub.delivered[0]] == [(bob, 1)]


async def test_one_event_to_the_same_user_twice_is_logged_once(setup) -> None:
    db, hub, changes, alice, bob = setup
    async with changes("test.dupes") as ch:
        await ch.emit([alice, alice, bob], FriendRequest(alice, bob))
    assert sorted((r.user_id, r.seq) for r in hub.delivered[0]) == [(alice, 1), (bob, 1)]
