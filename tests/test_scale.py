"""At scale: 200 000 messages in 1 000 dialogs (among 21 000).  Every hot query of dialogs,
messages and search uses an index (EXPLAIN of the very SQL the storage modules
run, with real values and as a generic plan, which is what a prepared
statement may switch to), and a page stays fast through the real server."""

from __future__ import annotations

import json
import os
import statistics
import time
from datetime import UTC, datetime

import asyncpg
import pytest

from bench.seed import seed
from protocol.requests.search import like_pattern
from storage import dialogs as dialog_sql
from storage import messages as message_sql
from storage import search as search_sql

from .conftest import unique

MESSAGES = 200_000
DIALOGS = 1_000
#: Quiet dialogs (members, no messages): most of a real server's dialogs, and
#: what makes "my dialogs" a needle in a haystack as it is in production.
IDLE_DIALOGS = 20_000
#: The test user is in this many of the dialogs (the longest histories among them).
MY_DIALOGS = 30
#: SESSIA_SHOW_PLANS="history page,catch-up page" prints those plans.
SHOW_PLANS = {n.strip() for n in os.environ.get("SESSIA_SHOW_PLANS", "").split(",") if n.strip()}
BIG_TABLES = ("messages", "dialog_members", "dialogs", "message_media", "message_hidden")

#: Steps that must read a dialog's messages by an ordered scan of the primary key,
#: stopping at their LIMIT (a dialog's newest messages, the unread count up to its
#: cap, a page), or through the per-dialog text index: only that index answers
#: "these dialogs and this text" without reading the dialogs whole.  A bitmap scan
#: would read every message of the dialog whatever the LIMIT.
REQUIRED_INDEX = {
    "my dialogs": "Index Scan using messages_pkey",
    "my dialogs since": "Index Scan using messages_pkey",
    "history page": "Index Scan Backward using messages_pkey",
    "search my dialogs' newest messages": "messages_pkey",
    "search my dialogs' index (rare)": "messages_dialog_content_trgm",
    "search my dialogs' index (common)": "messages_dialog_content_trgm",
    "search in a dialog's newest messages": "messages_pkey",
    "search in a dialog, reading on": "messages_pkey",
    "search in a dialog's index (rare)": "messages_dialog_content_trgm",
    "search in my dialogs' index": "messages_dialog_content_trgm",
}
LATENCY_BOUNDS_MS = {"GetMessages page at skip 5000": 400}

EXPLAIN_GENERIC = """
CREATE FUNCTION pg_temp.explain_generic(q text) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY EXECUTE 'EXPLAIN (GENERIC_PLAN) ' || q;
END
$$
"""


async def plans(conn: asyncpg.Connection, sql: str, *args) -> tuple[str, str]:
    """The plan for these values, and the generic plan for any values."""
    custom = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql, *args))
    generic = "\n".join(r[0] for r in await conn.fetch("SELECT * FROM pg_temp.explain_generic($1)", sql))
    return custom, generic


def unindexed(name: str, plan: str) -> list[str]:
    """Why ``plan`` is not an indexed plan (nothing if it is)."""
    problems = [f"{name} uses no index"] if "Index" not in plan else []
    problems += [f"{name} scans all of {t}" for t in BIG_TABLES if f"Seq Scan on {t}" in plan]
    return [f"{p}:\n{plan}" for p in problems]


async def analyzed(conn: asyncpg.Connection, sql: str, *args) -> dict:
    """EXPLAIN ANALYZE of ``sql`` (JSON), its effects rolled back."""
    tr = conn.transaction()
    await tr.start()
    try:
        return json.loads(await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *args))[0]["Plan"]
    finally:
        await tr.rollback()


def nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", ()):
        yield from nodes(child)


def node(plan: dict, subplan: str) -> dict:
    return next(n for n in nodes(plan) if n.get("Subplan Name") == subplan)


def rescanned_ctes(plan: dict) -> list[str]:
    """CTE scans run once per row of an outer input, with rows each time."""
    return [f"{n['CTE Name']}: {n['Actual Loops']} loops of {n['Actual Rows']} rows" for n in nodes(plan)
            if n["Node Type"] == "CTE Scan" and n["Actual Loops"] > 1 and n["Actual Rows"] >= 2]


async def timed(samples: int, call) -> tuple[float, float]:
    """Median and 95th percentile in milliseconds."""
    took = []
    for _ in range(samples):
        t0 = time.perf_counter()
        await call()
        took.append((time.perf_counter() - t0) * 1000)
    took.sort()
    return statistics.median(took), took[int(len(took) * 0.95) - 1]


@pytest.fixture
def scale_server(start_server, new_database):
    url = new_database()
    # Timing 30 samples of each search would exceed the per-session search rate.
    return start_server("--rate-search", "0", database_url=url), url


async def test_hot_queries_use_indexes_at_scale(scale_server, connect, capsys):
    server, url = scale_server
    me = await connect(target=server)
    login = unique()
    await me.register(login, f"{login}@example.org", "correct horse battery")

    conn = await asyncpg.connect(url)
    try:
        seeded = await seed(
            conn,
            messages=MESSAGES,
            dialogs=DIALOGS,
            idle_dialogs=IDLE_DIALOGS,
            extra_members=(me.user_id,),
            extra_dialogs=MY_DIALOGS,
        )
        assert seeded.seconds < 60, f"seeding took {seeded.seconds:.1f}s"
        assert await conn.fetchval("SELECT count(*) FROM messages") == MESSAGES

        big_id, uid = seeded.biggest_dialog, me.user_id
        big_key = seeded.dialog_keys[seeded.dialog_ids.index(big_id)]
        my_ids = list(seeded.dialog_ids[:MY_DIALOGS])
        # A few messages through the API: a rare word to search for, a hidden and a deleted one.
        needle = await me.send_message(big_key, "уникальныйтермин в длинной истории")
        hidden = await me.send_message(big_key, "hide me")
        await me.hide_message(big_key, hidden)
        deleted = await me.send_message(big_key, "delete me")
        await me.delete_message(big_key, deleted)
        await conn.execute("ANALYZE messages, message_hidden, dialogs, dialog_members")
        some_key = await conn.fetchval(
            "SELECT key FROM messages WHERE dialog_id = $1 ORDER BY id DESC OFFSET 500 LIMIT 1", big_id
        )
        since = await conn.fetchval(
            "SELECT created_at FROM messages WHERE dialog_id = $1 ORDER BY id DESC OFFSET 40 LIMIT 1", big_id
        )
        window_low = await conn.fetchval(
            "SELECT id FROM messages WHERE dialog_id = $1 ORDER BY id DESC OFFSET 63 LIMIT 1", big_id
        )
        await conn.execute(EXPLAIN_GENERIC)

        queries = {
            "membership": (dialog_sql.MEMBERSHIP_SQL, big_key, uid),
            "reader and read marks": (dialog_sql.READER_SQL, big_key, uid),
            "dialog access": (dialog_sql.ACCESS_SQL, big_key, uid),
            "dialog members": (dialog_sql.MEMBERS_SQL, big_id),
            "my dialogs": (dialog_sql.MY_DIALOGS_SQL, uid, 50, 0),
            "my dialogs since": (dialog_sql.MY_DIALOGS_SINCE_SQL, uid, 50, 0, since),
            "history page": (message_sql.HISTORY_NEWEST_SQL, big_key, uid, 50, 0),
            "deep history page": (message_sql.HISTORY_NEWEST_SQL, big_key, uid, 50, 5000),
            "catch-up page": (message_sql.PAGE_SINCE_SQL, big_id, uid, 50, 0, since),
            "one message": (message_sql.SINGLE_SQL, big_id, uid, some_key),
            "tombstones": (message_sql.DELETED_NEWEST_SQL, big_id, 50, 0),
            "tombstones since": (message_sql.DELETED_SINCE_SQL, big_id, 50, 0, since),
            "dialog media": (message_sql.DIALOG_MEDIA_SQL, big_id, uid, 50, 0),
            "send": (message_sql.ADD_BATCH_SQL, *message_sql.batch_args(
                [message_sql.MessageInsert(big_key, uid, "k" * 32, "hello", datetime.now(UTC))], "NewMessage")),
            "send, a batch of 100": (message_sql.ADD_BATCH_SQL, *message_sql.batch_args(
                [message_sql.MessageInsert(key, uid, f"k{i:031}", "hello", datetime.now(UTC))
                 for i, key in enumerate(seeded.dialog_keys[:100])], "NewMessage")),
            "edit": (message_sql.EDIT_SQL, big_key, uid, some_key, "edited"),
            "delete": (message_sql.DELETE_SQL, big_key, uid, some_key),
            "hide": (message_sql.HIDE_SQL, big_key, uid, some_key),
            "search my dialogs": (search_sql.MINE_SQL, uid, like_pattern("отчёт")),
            "search my dialogs' newest messages": (
                search_sql.WINDOW_HIT_SQL, uid, like_pattern("отчёт"), my_ids, search_sql.EVERYWHERE_WINDOW),
            "search my dialogs' index (rare)": (search_sql.INDEX_HIT_SQL, uid, like_pattern("уникальныйтермин"), my_ids),
            "search my dialogs' index (common)": (search_sql.INDEX_HIT_SQL, uid, like_pattern("отчёт"), my_ids),
            "search public dialogs": (search_sql.PUBLIC_DIALOGS_SQL, uid, like_pattern("Hello world"), 50, 0),
            "search dialog ids": (search_sql.MY_DIALOG_IDS_SQL, uid, [big_key]),
            "search in a dialog's newest messages": (
                search_sql.RANGE_MATCHES_SQL, uid, like_pattern("привет"), [big_id], [None], None, 64),
            "search in a dialog, reading on": (
                search_sql.RANGE_MATCHES_SQL, uid, like_pattern("привет"), [big_id], [window_low], window_low // 2, 512),
            "search in a dialog's index (rare)": (
                search_sql.INDEX_MATCHES_SQL, uid, like_pattern("уникальный"), [big_id], 50),
            "search in my dialogs' index": (search_sql.INDEX_MATCHES_SQL, uid, like_pattern("hello world"), my_ids, 50),
        }
        problems = []
        for name, (sql, *args) in queries.items():
            custom, generic = await plans(conn, sql, *args)
            if name in SHOW_PLANS:
                with capsys.disabled():
                    print(f"\n-- {name}\n{custom}\n-- {name} (generic plan)\n{generic}")
            problems += unindexed(name, custom) + unindexed(f"{name} (generic plan)", generic)
            if name in REQUIRED_INDEX:
                problems += [f"{name} does not use {REQUIRED_INDEX[name]}:\n{plan}"
                             for plan in (custom, generic) if REQUIRED_INDEX[name] not in plan]
        assert not problems, "\n\n".join(problems)

        # A batch of sends is one statement; each of its steps must be linear in the batch:
        # a CTE scanned again for every row of another is a nested loop, quadratic in it.
        batch = [message_sql.MessageInsert(key, uid, f"q{i:031}", "hello", datetime.now(UTC))
                 for i, key in enumerate(seeded.dialog_keys[:MY_DIALOGS] * 10)]
        plan = await analyzed(conn, message_sql.ADD_BATCH_SQL, *message_sql.batch_args(batch, "NewMessage"))
        assert node(plan, "CTE ins")["Actual Rows"] == len(batch)
        assert not rescanned_ctes(plan), rescanned_ctes(plan)
    finally:
        await conn.close()

    # The same operations through the server, as a client sees them.
    samples = 30
    latencies = {
        "GetMessages newest page (50)": await timed(samples, lambda: me.messages(big_key, take=50)),
        "GetMessages page at skip 5000": await timed(samples, lambda: me.messages(big_key, take=50, skip=5000)),
        "GetMessages catch-up": await timed(samples, lambda: me.messages(big_key, date=since, take=50)),
        "GetMessages one message": await timed(samples, lambda: me.message(big_key, some_key)),
        f"GetDialogs (of {MY_DIALOGS})": await timed(samples, lambda: me.dialogs(take=50)),
        "GetUsersDialog": await timed(samples, lambda: me.dialog_members(big_key)),
        "Search everyWhere (rare)": await timed(samples, lambda: me.search_dialogs("уникальныйтермин")),
        "Search everyWhere (common)": await timed(samples, lambda: me.search_dialogs("отчёт")),
        "Search inDialogs (rare)": await timed(samples, lambda: me.search_messages("уникальный", big_key)),
        "Search inDialogs (common)": await timed(samples, lambda: me.search_messages("привет", big_key)),
        "SendMessage add": await timed(samples, lambda: me.send_message(big_key, "timing message")),
    }
    # The table goes to the captured output: pytest shows it only when this
    # test fails (it would otherwise land in the middle of `make test`'s dots);
    # `pytest -s tests/test_scale.py` shows it always.
    table = "\n".join(
        [f"{MESSAGES} messages in {DIALOGS} dialogs (longest history {seeded.biggest_count}),"
         f" seeded in {seeded.seconds:.1f}s; latency through the server, ms:"]
        + [f"  {name:32} median {median:7.2f}   p95 {p95:7.2f}" for name, (median, p95) in latencies.items()]
    )
    print(table)

    # Correctness at scale: the rare word is found, hidden and deleted are not.
    assert [h.key for h in await me.search_messages("уникальныйтермин", big_key)] == [needle]
    assert (await me.search_dialogs("уникальныйтермин")).dialogs == (big_key,)
    assert await me.search_messages("hide me", big_key) == []
    assert await me.search_messages("delete me", big_key) == []
    # Generous bounds (a few times what a loaded test machine measures), to
    # catch a plan gone wrong rather than to benchmark.
    for name, (median, _) in latencies.items():
        bound = LATENCY_BOUNDS_MS.get(name, 100)
        assert median < bound, f"{name}: median {median:.1f} ms, expected under {bound} ms\n{table}"
