"""Reads of a dialog with many members cost what they cost in a small one:
checked on the real PostgreSQL with the plan's row counts, not timings."""

from __future__ import annotations

import json

import asyncpg

from storage.dialogs import READER_SQL
from storage.migrate import migrate

MEMBERS = 20_000


async def test_the_read_marks_of_a_page_read_two_members_not_all(new_database) -> None:
    conn = await asyncpg.connect(new_database())
    try:
        await migrate(conn)
        await conn.execute(
            "INSERT INTO users (login, email, nickname, password_hash, login_key, email_key)"
            " SELECT 'm' || g, 'm' || g || '@example.org', 'm' || g, 'x', 'm' || g, 'm' || g || '@example.org'"
            " FROM generate_series(1, $1::int) AS g", MEMBERS,
        )
        dialog_id = await conn.fetchval(
            "INSERT INTO dialogs (key, name, private, owner_id) SELECT 'big', 'big', false, min(id) FROM users"
            " RETURNING id"
        )
        await conn.execute(
            "INSERT INTO dialog_members (dialog_id, user_id, last_read_message_id)"
            " SELECT $1, id, (id * 7919) % 100000 FROM users", dialog_id,
        )
        await conn.execute("ANALYZE dialog_members, dialogs")
        reader = await conn.fetchval("SELECT user_id FROM dialog_members ORDER BY last_read_message_id DESC LIMIT 1")
        expected = await conn.fetchval(
            "SELECT max(last_read_message_id) FROM dialog_members WHERE user_id <> $1", reader
        )
        row = await conn.fetchrow(READER_SQL, "big", reader)
        assert row["others"] == expected  # the right answer, for the member who has read furthest

        plan = json.loads(await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {READER_SQL}", "big", reader))[0]
        scanned = []

        def walk(node: dict) -> None:
            if node.get("Relation Name") == "dialog_members":
                scanned.append(node["Actual Rows"] * node.get("Actual Loops", 1) + node.get("Rows Removed by Filter", 0))
            for child in node.get("Plans", ()):
                walk(child)

        walk(plan["Plan"])
        assert scanned and max(scanned) <= 3, scanned
    finally:
        await conn.close()
