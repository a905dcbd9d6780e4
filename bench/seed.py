"""Bulk data for scale checks: users, dialogs, members and a long message
history, written straight into PostgreSQL with COPY.

This bypasses the API on purpose (200 000 messages through SendMessage would
measure the network, not the indexes) and is for seeding test or benchmark
databases only.

    python -m bench.seed --database-url postgresql://... --messages 200000 --dialogs 1000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

WORDS = (
    "привет как дела сегодня завтра встреча работа проект отчёт кофе погода "
    "дорога поезд билет город море фото смотри отлично спасибо пожалуйста вечером "
    "hello world meeting tomorrow project report coffee weather train ticket city "
    "photo great thanks please evening deploy release build server client search"
).split()


@dataclass(frozen=True, slots=True)
class Seeded:
    user_ids: tuple[int, ...]
    dialog_ids: tuple[int, ...]
    dialog_keys: tuple[str, ...]
    messages: int
    #: the dialog with the longest history and its message count
    biggest_dialog: int
    biggest_count: int
    seconds: float


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 10)))


async def seed(
    conn: asyncpg.Connection,
    *,
    users: int = 5000,
    dialogs: int = 1000,
    messages: int = 200_000,
    idle_dialogs: int = 0,
    media_share: float = 0.05,
    hidden_share: float = 0.02,
    extra_members: tuple[int, ...] = (),
    extra_dialogs: int = 100,
    rng_seed: int = 7,
) -> Seeded:
    """Create ``users`` accounts, ``dialogs`` dialogs of 2-8 of them, and
    ``messages`` messages spread unevenly (a few long histories, many short
    ones) over the last 30 days; ``media_share`` of the messages carry a
    picture and ``hidden_share`` are hidden by one member.  ``idle_dialogs``
    more dialogs have members but no messages (most dialogs of a real server
    are quiet).  ``extra_members`` (existing user ids) join the
    ``extra_dialogs`` first dialogs, the longest histories among them."""
    started = time.monotonic()
    rng = random.Random(rng_seed)
    tag = secrets.token_hex(4)

    user_ids = [
        r["id"]
        for r in await conn.fetch(
            "INSERT INTO users (login, email, nickname, password_hash)"
            " SELECT 'seed' || $1 || '_' || g, 'seed' || $1 || '_' || g || '@example.org', 'Seed ' || g, '!'"
            " FROM generate_series(1, $2::int) AS g RETURNING id",
            tag,
            users,
        )
    ]

    now = datetime.now(UTC)
    start = now - timedelta(days=30)
    dialog_rows = []
    # A quarter of the active dialogs are public; quiet ones are private chats.
    for i in range(dialogs + idle_dialogs):
        dialog_rows.append(
            (secrets.token_hex(16), f"{rng.choice(WORDS).title()} {rng.choice(WORDS)} {i}", i >= dialogs or i % 4 != 0,
             rng.choice(user_ids), start - timedelta(hours=1) + timedelta(seconds=i))
        )
    dialog_ids = [
        r["id"]
        for r in await conn.fetch(
            "INSERT INTO dialogs (key, name, private, owner_id, created_at, updated_at)"
            " SELECT k, n, p, o, c, c FROM unnest($1::text[], $2::text[], $3::bool[], $4::bigint[], $5::timestamptz[])"
            " AS u(k, n, p, o, c) RETURNING id",
            [r[0] for r in dialog_rows],
            [r[1] for r in dialog_rows],
            [r[2] for r in dialog_rows],
            [r[3] for r in dialog_rows],
            [r[4] for r in dialog_rows],
        )
    ]

    members: list[tuple[int, int, str]] = []
    dialog_members: dict[int, list[int]] = {}
    for index, (dialog_id, row) in enumerate(zip(dialog_ids, dialog_rows, strict=True)):
        owner = row[3]
        size = rng.randint(1, 7 if index < dialogs else 2)
        others = [u for u in rng.sample(user_ids, size + 1) if u != owner][:size]
        extra = [u for u in extra_members if index < extra_dialogs and u != owner and u not in others]
        dialog_members[dialog_id] = [owner, *others, *extra]
        members.append((dialog_id, owner, "owner"))
        members.extend((dialog_id, u, "member") for u in [*others, *extra])
    await conn.copy_records_to_table("dialog_members", records=members, columns=["dialog_id", "user_id", "role"])

    # Uneven histories: dialog i gets a share proportional to 1/(i+1) (the first
    # ones are long), all in time order so that id order is date order.
    weights = [1 / (i + 1) for i in range(dialogs)]
    step = timedelta(days=30) / max(messages, 1)
    picks = rng.choices(range(dialogs), weights=weights, k=messages)
    records = []
    for n, index in enumerate(picks):
        dialog_id = dialog_ids[index]
        records.append(
            (dialog_id, secrets.token_hex(16), rng.choice(dialog_members[dialog_id]), _sentence(rng), start + step * n)
        )
    await conn.copy_records_to_table(
        "messages", records=records, columns=["dialog_id", "key", "author_id", "content", "created_at"]
    )
    await _media_and_hidden(conn, rng, records, dialog_members, media_share, hidden_share)
    await conn.execute(
        "UPDATE dialogs d SET last_message_at = m.last FROM"
        " (SELECT dialog_id, max(created_at) AS last FROM messages WHERE dialog_id = ANY($1::bigint[]) GROUP BY dialog_id) m"
        " WHERE d.id = m.dialog_id",
        dialog_ids,
    )
    await conn.execute("ANALYZE users, dialogs, dialog_members, messages, message_media, message_hidden")
    counts: dict[int, int] = {}
    for index in picks:
        counts[index] = counts.get(index, 0) + 1
    biggest = max(counts, key=counts.__getitem__)
    return Seeded(
        user_ids=tuple(user_ids),
        dialog_ids=tuple(dialog_ids),
        dialog_keys=tuple(r[0] for r in dialog_rows),
        messages=messages,
        biggest_dialog=dialog_ids[biggest],
        biggest_count=counts[biggest],
        seconds=time.monotonic() - started,
    )


async def _media_and_hidden(
    conn: asyncpg.Connection,
    rng: random.Random,
    records: list[tuple],
    dialog_members: dict[int, list[int]],
    media_share: float,
    hidden_share: float,
) -> None:
    """Pictures on some messages (one media row each, owned by the author) and
    messages hidden by one member."""
    with_media = rng.sample(records, int(len(records) * media_share))
    hidden = rng.sample(records, int(len(records) * hidden_share))
    ids = {
        key: message_id
        for key, message_id in await conn.fetch(
            "SELECT key, id FROM messages WHERE key = ANY($1::text[])", [r[1] for r in with_media + hidden]
        )
    }
    media_rows = [(secrets.token_hex(16), r[2], "jpg", 1000 + i, secrets.token_bytes(32)) for i, r in enumerate(with_media)]
    await conn.copy_records_to_table(
        "media", records=media_rows, columns=["key", "owner_id", "extension", "size", "sha256"]
    )
    await conn.copy_records_to_table(
        "message_media",
        records=[(r[0], ids[r[1]], m[0], 1) for r, m in zip(with_media, media_rows, strict=True)],
        columns=["dialog_id", "message_id", "media_key", "position"],
    )
    await conn.copy_records_to_table(
        "message_hidden",
        records=[(r[0], ids[r[1]], rng.choice(dialog_members[r[0]])) for r in hidden],
        columns=["dialog_id", "message_id", "user_id"],
    )


async def _main(args: argparse.Namespace) -> None:
    conn = await asyncpg.connect(args.database_url)
    try:
        done = await seed(
            conn, users=args.users, dialogs=args.dialogs, messages=args.messages, idle_dialogs=args.idle_dialogs
        )
    finally:
        await conn.close()
    print(
        f"seeded {len(done.user_ids)} users, {len(done.dialog_ids)} dialogs, {done.messages} messages"
        f" (longest history: {done.biggest_count}) in {done.seconds:.1f}s"
    )


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.seed", description=__doc__.split("\n\n")[0])
    p.add_argument("--database-url", required=True, help="a migrated sessia database (test or benchmark only)")
    p.add_argument("--users", type=int, default=5000)
    p.add_argument("--dialogs", type=int, default=1000)
    p.add_argument("--messages", type=int, default=200_000)
    p.add_argument("--idle-dialogs", type=int, default=20_000, help="dialogs with members but no messages")
    asyncio.run(_main(p.parse_args()))


if __name__ == "__main__":
    main()
