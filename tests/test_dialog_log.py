"""A large dialog's own log (storage/dialog_log.py) on a real PostgreSQL: one
row per event, numbered in commit order, read by members from where they
joined, with messages as they are now."""

from __future__ import annotations

import asyncio

import pytest

from storage import dialog_log, dialogs, users
from storage.db import Database
from storage.migrate import migrate


@pytest.fixture
async def db(new_database):
    db = await Database.connect(new_database(), min_size=1, max_size=4)
    async with db.connection("migrate") as conn:
        await migrate(conn)
    try:
        yield db
    finally:
        await db.close()


async def make(db: Database, members: int) -> tuple[int, list[int]]:
    async with db.atomic("setup") as tx:
        ids = [(await users.create_user(tx, f"u{i}", f"u{i}@example.org", "x")).id for i in range(members)]
        dialog = await dialogs.create_dialog(tx, key="big", name="big", private=False, photo_key=None,
                                             owner_id=ids[0], members=tuple(ids[1:]))
        await dialog_log.make_large(tx, dialog.id)
    return dialog.id, ids


async def test_one_row_per_event_numbered_per_dialog(db: Database) -> None:
    dialog_id, ids = await make(db, 5)
    async with db.atomic("events") as tx:
        first = await dialog_log.append(tx, dialog_id, "DialogChanged", {"PkDialog": "big", "name": "x"})
        second = await dialog_log.append(tx, dialog_id, "DialogChanged", {"PkDialog": "big", "name": "y"})
    assert first is not None and second is not None and (first.pts, second.pts) == (1, 2)
    assert await db.fetchval("n", "SELECT count(*) FROM dialog_events WHERE dialog_id = $1", dialog_id) == 2
    page = await dialog_log.read_after(db, "big", ids[3], 0, 10)
    assert [(r.pts, r.payload) for r in page.rows] == [(1, {"PkDialog": "big", "name": "x"}),
                                                       (2, {"PkDialog": "big", "name": "y"})]
    assert (page.last_pts, page.through) == (2, 2)


async def test_a_small_dialog_is_not_logged_here(db: Database) -> None:
    async with db.atomic("setup") as tx:
        owner = await users.create_user(tx, "o", "o@example.org", "x")
        small = await dialogs.create_dialog(tx, key="small", name="s", private=True, photo_key=None,
                                            owner_id=owner.id, members=())
        assert await dialog_log.append(tx, small.id, "DialogChanged", {}) is None


async def test_outsiders_and_late_joiners_read_only_what_they_may(db: Database) -> None:
    dialog_id, ids = await make(db, 3)
    async with db.atomic("before") as tx:
        await dialog_log.append(tx, dialog_id, "DialogChanged", {"n": 1})
        late = await users.create_user(tx, "late", "late@example.org", "x")
        outsider = await users.create_user(tx, "out", "out@example.org", "x")
        await dialogs.change_members(tx, dialog_id, add_members=(late.id,))
        await dialog_log.set_joined(tx, dialog_id, [late.id])
        await dialog_log.append(tx, dialog_id, "MembersAdded", {"n": 2})
        await dialogs.remove_member(tx, dialog_id, ids[2])
        await dialog_log.append(tx, dialog_id, "MemberKicked", {"n": 3}, subject_id=ids[2])
        await dialog_log.append(tx, dialog_id, "DialogChanged", {"n": 4})

    async def seen(user_id: int) -> list[int]:
        return [r.payload["n"] for r in (await dialog_log.read_after(db, "big", user_id, 0, 10)).rows]

    assert await seen(ids[1]) == [1, 2, 3, 4]
    assert await seen(late.id) == [2, 3, 4]  # from where they joined
    assert await seen(ids[2]) == [3]  # removed: their own removal only
    assert await seen(outsider.id) == []
    page = await dialog_log.read_after(db, "big", outsider.id, 0, 10)
    assert page.through == 4  # passed over, not waited for


async def test_events_commit_in_pts_order_when_two_transactions_race(db: Database) -> None:
    dialog_id, _ = await make(db, 2)
    first_appended = asyncio.Event()
    release = asyncio.Event()

    async def slow() -> int:
        async with db.atomic("slow") as tx:
            row = await dialog_log.append(tx, dialog_id, "DialogChanged", {"who": "slow"})
            first_appended.set()
            await release.wait()  # holds the dialog row until it commits
            assert row is not None
            return row.pts

    async def fast() -> int:
        await first_appended.wait()
        async with db.atomic("fast") as tx:
            row = await dialog_log.append(tx, dialog_id, "DialogChanged", {"who": "fast"})
            assert row is not None
            return row.pts

    slow_task, fast_task = asyncio.create_task(slow()), asyncio.create_task(fast())
    await first_appended.wait()
    await asyncio.sleep(0.2)
    assert not fast_task.done()  # waits for the dialog row: no pts can commit ahead of an earlier one
    release.set()
    assert (await slow_task, await fast_task) == (1, 2)


async def test_a_batch_of_sends_logs_a_large_dialogs_messages_once_each(db: Database) -> None:
    from datetime import UTC, datetime

    from storage import messages

    dialog_id, ids = await make(db, 50)
    async with db.atomic("small") as tx:
        small = await dialogs.create_dialog(tx, key="small", name="s", private=True, photo_key=None,
                                            owner_id=ids[0], members=(ids[1],))
    now = datetime.now(UTC)
    batch = [messages.MessageInsert("big", ids[i % 3], f"key{i:05}", f"m{i}", now) for i in range(3)]
    batch.append(messages.MessageInsert("small", ids[0], "smallkey1", "to two", now))
    sent = await messages.add_batch(db, batch, "NewMessage")
    assert [s.pts for s in sent if s is not None] == [1, 2, 3, None]
    assert [len(s.events) for s in sent if s is not None] == [0, 0, 0, 2]  # per member only in the small one
    count = "SELECT count(*) FROM events WHERE dialog_id = $1"
    assert await db.fetchval("n", count, dialog_id) == 0
    assert await db.fetchval("n", count, small.id) == 2
    page = await dialog_log.read_after(db, "big", ids[10], 0, 10)
    assert [(r.pts, r.kind, r.message.content if r.message else None) for r in page.rows] == [
        (1, "NewMessage", "m0"), (2, "NewMessage", "m1"), (3, "NewMessage", "m2")]
    assert await dialog_log.last_pts(db, dialog_id) == 3
