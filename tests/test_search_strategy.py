"""storage/search.py decides a dialog from its newest messages when it can and
asks the per-dialog text index when it cannot.  These tests build dialogs
where each way is the one that has to deliver, and compare every answer with
the plain definition of the search (one query over all visible matches), with
custom and with generic plans (what a prepared statement may switch to).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from protocol.requests.search import like_pattern
from storage import search
from storage.db import Database
from storage.migrate import migrate

W = search.IN_DIALOGS_WINDOW
E = search.EVERYWHERE_WINDOW


def _alpha(seq: int, n: int) -> str:
    return f"alpha {seq}" if seq % 3 == 0 else f"filler {seq}"


def _beta(seq: int, n: int) -> str:
    """Only among the oldest messages: past every window."""
    return f"beta {seq}" if seq < 300 and seq % 2 == 0 else f"filler {seq}"


def _gamma(seq: int, n: int) -> str:
    """A few in the window, more below it."""
    return f"gamma {seq}" if seq % 40 == 0 else f"filler {seq}"


#: dialog -> (messages, content of message ``seq`` of ``n``, 0 = oldest)
STORE = {
    "A": (3000, _alpha),
    "B": (W + 1000, _beta),
    # more than the newest messages and every round of reading on
    "C": (W + search.IN_DIALOGS_ROUNDS * search.IN_DIALOGS_READ_ON + 1000, _gamma),
    "E": (30, lambda seq, n: "small talk alpha" if seq == 5 else f"filler {seq}"),
    # not mine, and full of every word
    "F": (500, lambda seq, n: "alpha beta gamma theta omega"),
    # more dialogs than one chunk of everyWhere, a rare word in three of them
    **{f"H{i}": (E + 20, lambda seq, n, i=i: f"theta {seq}" if i in (5, 70, 99) and seq == 3 else f"filler {seq}")
       for i in range(search.EVERYWHERE_CHUNK + 40)},
}
#: most recent activity first; "G" has no messages at all
ACTIVITY = ["A", "C", "B", "E", *(f"H{i}" for i in range(search.EVERYWHERE_CHUNK + 40)), "F", "G"]
MANY = [f"H{i}" for i in range(search.EVERYWHERE_CHUNK + 40)]

PLAIN_MY_DIALOGS = """
SELECT d.key FROM dialogs d JOIN dialog_members dm ON dm.dialog_id = d.id AND dm.user_id = $1
WHERE lower(d.name) LIKE lower($2) OR EXISTS (
    SELECT 1 FROM messages m WHERE m.dialog_id = d.id AND m.deleted_at IS NULL AND lower(m.content) LIKE lower($2)
    AND NOT EXISTS (SELECT 1 FROM message_hidden h
                    WHERE h.dialog_id = m.dialog_id AND h.user_id = $1 AND h.message_id = m.id))
ORDER BY coalesce(d.last_message_at, d.created_at) DESC, d.id DESC
LIMIT $3 OFFSET $4
"""
PLAIN_IN_DIALOGS = """
SELECT m.key, d.key AS dialog_key FROM messages m JOIN dialogs d ON d.id = m.dialog_id
WHERE m.dialog_id = ANY($5::bigint[]) AND m.deleted_at IS NULL AND lower(m.content) LIKE lower($2)
  AND NOT EXISTS (SELECT 1 FROM message_hidden h
                  WHERE h.dialog_id = m.dialog_id AND h.user_id = $1 AND h.message_id = m.id)
ORDER BY m.id DESC
LIMIT $3 OFFSET $4
"""


class Statements(Counter):
    """The storage's statement names, counted as the database layer runs them."""

    def observe(self, name: str, seconds: float) -> None:
        self[name] += 1


@pytest.fixture(params=["force_custom_plan", "force_generic_plan"])
async def store(new_database, request):
    """A fresh database holding STORE; yields (Database, my user id, dialog ids by name)."""
    url = new_database()
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        me, other = [r["id"] for r in await conn.fetch(
            "INSERT INTO users (login, email, nickname, password_hash)"
            " SELECT 's' || g, 's' || g || '@example.org', 'S', '!' FROM generate_series(1, 2) g RETURNING id")]
        now = datetime.now(UTC)
        ids = {}
        for n, name in enumerate(ACTIVITY):
            owner = other if name == "F" else me
            ids[name] = await conn.fetchval(
                "INSERT INTO dialogs (key, name, owner_id, created_at, last_message_at) VALUES ($1, $2, $3, $4, $5)"
                " RETURNING id",
                f"d{name}", "Epsilon club" if name == "E" else f"dialog {name}", owner,
                now - timedelta(days=30), None if name == "G" else now - timedelta(hours=n))
            await conn.execute("INSERT INTO dialog_members (dialog_id, user_id) VALUES ($1, $2)", ids[name], owner)
        # Interleaved in time, so that the ids of different dialogs alternate.
        rows = sorted(
            ((seq / n, ids[name], f"{name}{seq}", me, text(seq, n))
             for name, (n, text) in STORE.items() for seq in range(n)),
            key=lambda r: r[0],
        )
        await conn.copy_records_to_table(
            "messages", records=[r[1:] for r in rows], columns=["dialog_id", "key", "author_id", "content"])
        # Hidden for me and deleted: among the newest messages and among the old ones.
        hidden = [f"A{s}" for s in range(2900, 3000) if s % 9 == 0] + [f"B{s}" for s in range(0, 300, 10)]
        deleted = [f"A{s}" for s in range(2900, 3000) if s % 30 == 0] + [f"B{s}" for s in range(0, 300, 14)]
        await conn.execute(
            "INSERT INTO message_hidden (dialog_id, message_id, user_id)"
            " SELECT dialog_id, id, $2 FROM messages WHERE key = ANY($1::text[])", hidden, me)
        await conn.execute("UPDATE messages SET deleted_at = now() WHERE key = ANY($1::text[])", deleted)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()

    async def plan_mode(c: asyncpg.Connection) -> None:
        await c.execute(f"SET plan_cache_mode = {request.param}")

    pool = await asyncpg.create_pool(url, min_size=1, max_size=2, init=plan_mode)
    db = Database(pool)
    db.timings = Statements()
    try:
        yield db, me, ids
    finally:
        await pool.close()


async def test_in_dialogs_equals_the_plain_search(store):
    db, me, ids = store
    sets = [[ids[n] for n in "ABCEG"], [ids["C"]], [ids["B"], ids["E"]], [ids["A"], ids["C"], ids["F"]],
            [ids[n] for n in MANY], [ids[n] for n in [*MANY[:4], "B", "C"]]]
    checked = 0
    for word in ("alpha", "beta", "gamma", "theta", "omega", "small talk", "lph", "er 12", "12", "Filler 29",
                 "nowhere at all"):
        for take, skip in ((50, 0), (5, 3), (100, 0), (20, 480), (7, 1000)):
            for dialogs in sets:
                pattern = like_pattern(word)
                keys = {ids[n]: f"d{n}" for n in ids if ids[n] in dialogs}
                got = await search.in_dialogs(db, me, keys, pattern, take=take, skip=skip)
                want = await db.fetch("plain", PLAIN_IN_DIALOGS, me, pattern, take, skip, dialogs)
                assert [(h.key, h.dialog_key) for h in got] == [tuple(r) for r in want], (word, take, skip, dialogs)
                checked += len(want)
    assert checked > 1000


async def test_in_dialogs_reads_on_or_asks_the_index_as_the_newest_messages_say(store):
    db, me, ids = store
    runs = db.timings

    async def page(word: str, *names: str) -> list[str]:
        runs.clear()
        hits = await search.in_dialogs(db, me, {ids[n]: n for n in names}, like_pattern(word), take=50, skip=0)
        return [h.key for h in hits]

    # A third of A's messages say alpha: its newest messages and one more round hold the page.
    got = await page("alpha", "A")
    assert len(got) == 50 and all(k.startswith("A") for k in got)
    assert "A2997" not in got and "A2970" not in got and "A2994" in got  # hidden, deleted, visible
    assert runs["search.range_matches"] == 2 and runs["search.index_matches"] == 0
    # beta is only in B's oldest messages: not in its newest, so B is not read on but asked of the index.
    got = await page("beta", "B")
    hidden_or_deleted = [s for s in range(0, 300, 2) if s % 10 == 0 or s % 14 == 0]
    assert got == [f"B{s}" for s in range(298, -1, -2) if s not in hidden_or_deleted][:50]
    assert runs["search.range_matches"] == 1 and runs["search.index_matches"] == 1
    # gamma, one message in 40 of C: read on for every round, and the rest from the index.
    got = await page("gamma", "C")
    assert got == [f"C{s}" for s in range(STORE["C"][0] - 1, -1, -1) if s % 40 == 0][:50]
    assert runs["search.range_matches"] == 1 + search.IN_DIALOGS_ROUNDS and runs["search.index_matches"] == 1
    # alpha in A and in F (where every message has it): F's newest fill the page down to a floor
    # above most of A, and A is read on only down to that floor.
    got = await page("alpha", "A", "F")
    assert runs["search.range_matches"] == 2 and runs["search.index_matches"] == 0
    assert {k[0] for k in got} == {"A", "F"}


async def test_everywhere_equals_the_plain_search(store):
    db, me, ids = store
    for word in ("alpha", "beta", "gamma", "theta", "omega", "epsilon", "small talk", "dialog", "12", "Filler 29",
                 "nowhere at all", "filler 7", "dialog H3"):
        for take, skip in ((50, 0), (1, 0), (2, 1), (3, 5), (100, 0), (10, 60)):
            pattern = like_pattern(word)
            got = await search.my_dialogs(db, me, pattern, take=take, skip=skip)
            want = await db.fetch("plain", PLAIN_MY_DIALOGS, me, pattern, take, skip)
            assert got == [r["key"] for r in want], (word, take, skip)


async def test_everywhere_reads_windows_while_they_find_the_word(store):
    db, me, ids = store
    runs = db.timings

    async def found(word: str, take: int = 50) -> list[str]:
        runs.clear()
        return await search.my_dialogs(db, me, like_pattern(word), take=take, skip=0)

    # beta is past B's window: the index decides B; alpha is in A's and E's windows.
    assert await found("beta") == ["dB"]
    assert await found("alpha", take=1) == ["dA"]
    assert runs["search.window_hit"] == 1 and runs["search.index_hit"] == 1  # one chunk was enough
    # theta is in no window of the first chunk: the next chunk goes straight to the index.
    assert await found("theta") == ["dH5", "dH70", "dH99"]
    assert runs["search.window_hit"] == 1 and runs["search.index_hit"] == 2
    # A matching name decides a dialog without its messages.
    assert await found("epsilon") == ["dE"]
