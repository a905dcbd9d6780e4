"""The accounting at the end of a chaos run: the database against what the
senders were told and what the receivers were pushed.

- lost: acknowledged (answered 200) but not stored under the key the answer named;
- stored twice: a marker stored more than once (one request made two
  messages), or a key more than once in a dialog;
- unacknowledged but stored: a request whose answer never came (the
  connection died first) and that was stored; allowed, it is what a lost
  answer means.  A sender without key that retried may then have its message
  twice: reported as "retried without key, stored twice", the reason for
  ``msgkey``, not an error of the server;
- event log: every stored message has exactly one NewMessage event for each
  member of its dialog;
- per receiver: the NewMessage events it was pushed against the messages
  stored in its dialogs (all of them: it subscribed before the first send):
  missing, pushed twice, pushed but not stored, and out of order (a message
  pushed after one with a higher id in the same dialog).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import asyncpg

from .traffic import Receiver, Sender, marker_of

MESSAGES_SQL = """
SELECT d.key AS dialog, m.id, m.key, m.content
FROM messages m JOIN dialogs d ON d.id = m.dialog_id
WHERE d.key = ANY($1::text[])
ORDER BY m.id
"""
MEMBERS_SQL = """
SELECT d.key AS dialog, dm.user_id
FROM dialog_members dm JOIN dialogs d ON d.id = dm.dialog_id
WHERE d.key = ANY($1::text[])
"""
EVENTS_SQL = """
SELECT e.user_id, d.key AS dialog, m.key AS msgkey
FROM events e
JOIN dialogs d ON d.id = e.dialog_id
JOIN messages m ON m.dialog_id = e.dialog_id AND m.id = e.message_id
WHERE e.kind = 'NewMessage' AND e.user_id = ANY($1::bigint[])
"""


@dataclass(slots=True)
class Stored:
    dialog: str
    id: int
    key: str
    marker: str | None


async def read_database(url: str, dialogs: list[str], users: list[int]) -> tuple[list[Stored], dict[str, set[int]], Counter]:
    """The stored messages of the run's dialogs, their members, and the
    NewMessage events of the run's users counted by (user, dialog, key)."""
    conn = await asyncpg.connect(url, timeout=30)
    try:
        messages = [Stored(r["dialog"], r["id"], r["key"], marker_of(r["content"]))
                    for r in await conn.fetch(MESSAGES_SQL, dialogs)]
        members: dict[str, set[int]] = defaultdict(set)
        for r in await conn.fetch(MEMBERS_SQL, dialogs):
            members[r["dialog"]].add(r["user_id"])
        events = Counter((r["user_id"], r["dialog"], r["msgkey"]) for r in await conn.fetch(EVENTS_SQL, users))
    finally:
        await conn.close()
    return messages, members, events


def account(senders: list[Sender], receivers: list[Receiver], messages: list[Stored],
            members: dict[str, set[int]], events: Counter) -> dict[str, Any]:
    """Every count of the report (see the module docstring)."""
    by_key = {(m.dialog, m.key): m for m in messages}
    key_counts = Counter((m.dialog, m.key) for m in messages)
    marker_counts = Counter(m.marker for m in messages if m.marker is not None)
    acks = [a for s in senders for a in s.acks]
    acked_markers = {a.marker for a in acks}
    attempts: dict[str, tuple[Sender, int]] = {m: (s, n) for s in senders for m, n in s.attempts.items()}

    lost = [a for a in acks if (found := by_key.get((a.dialog, a.msgkey))) is None or found.marker != a.marker]
    stored_twice = sum(c - 1 for c in marker_counts.values() if c > 1) + sum(c - 1 for c in key_counts.values() if c > 1)
    stray = [m for m in messages if m.marker not in attempts]
    unacked_stored = [m for m in messages if m.marker in attempts and m.marker not in acked_markers]
    keyless_stored: Counter[tuple[int, int]] = Counter()
    for m in messages:
        if m.marker in attempts and not attempts[m.marker][0].keyed:
            keyless_stored[(attempts[m.marker][0].index, attempts[m.marker][1])] += 1

    log_missing = log_twice = 0
    for m in messages:
        for user in members.get(m.dialog, ()):
            count = events[(user, m.dialog, m.key)]
            log_missing += count == 0
            log_twice += max(count - 1, 0)

    per_receiver = [_receiver(r, messages, by_key) for r in receivers]
    return {
        "requests": sum(len(s.attempts) for s in senders),
        "acknowledged": len(acks),
        "acknowledged_keyed": sum(len(s.acks) for s in senders if s.keyed),
        "acknowledged_without_key": sum(len(s.acks) for s in senders if not s.keyed),
        "stored": len(messages),
        "lost": len(lost),
        "stored_twice": stored_twice,
        "unacknowledged_stored": len(unacked_stored),
        "retried_without_key_stored_twice": sum(1 for c in keyless_stored.values() if c > 1),
        "stray": len(stray),
        "event_log_missing": log_missing,
        "event_log_duplicated": log_twice,
        "refused": dict(sum((s.refused for s in senders), Counter())),
        "gave_up": sum(s.gave_up for s in senders),
        "retries": sum(s.retries for s in senders),
        "reconnects": sum(s.reconnects for s in senders),
        "receivers": len(receivers),
        "receivers_complete": sum(1 for r in per_receiver if not r["missing"]),
        "events_received": sum(r["received"] for r in per_receiver),
        "events_missing": sum(r["missing"] for r in per_receiver),
        "events_duplicated": sum(r["duplicated"] for r in per_receiver),
        "events_unexpected": sum(r["unexpected"] for r in per_receiver),
        "order_violations": sum(r["out_of_order"] for r in per_receiver),
        "stream_errors": dict(sum((r.escaped for r in receivers), Counter())),
        "per_receiver": per_receiver,
        "examples": {
            "lost": [vars_of(a) for a in lost[:5]],
            "stray": [vars_of(m) for m in stray[:5]],
        },
    }


def _receiver(r: Receiver, messages: list[Stored], by_key: dict[tuple[str, str], Stored]) -> dict[str, Any]:
    mine = {(m.dialog, m.key) for m in messages if m.dialog in r.dialogs}
    got = Counter((e.dialog, e.msgkey) for e in r.events)
    last_id: dict[str, int] = {}
    out_of_order = 0
    for e in r.events:
        stored = by_key.get((e.dialog, e.msgkey))
        if stored is None:
            continue
        if stored.id < last_id.get(e.dialog, 0):
            out_of_order += 1
        last_id[e.dialog] = max(last_id.get(e.dialog, 0), stored.id)
    return {
        "receiver": r.index,
        "node": r.node,
        "dialogs": len(r.dialogs),
        "expected": len(mine),
        "received": len(r.events),
        "missing": len(mine - set(got)),
        "duplicated": sum(c - 1 for c in got.values() if c > 1),
        "unexpected": sum(1 for k in got if k not in mine),
        "out_of_order": out_of_order,
    }


def vars_of(item: Any) -> dict[str, Any]:
    return {name: getattr(item, name) for name in item.__slots__}


#: Counts that must all be zero (and acknowledged above zero) for a run to pass.
MUST_BE_ZERO = ("lost", "stored_twice", "stray", "event_log_missing", "event_log_duplicated", "events_missing",
                "events_duplicated", "events_unexpected", "order_violations", "refused", "stream_errors")


def failures(counts: dict[str, Any]) -> list[str]:
    out = [f"{name}: {counts[name]}" for name in MUST_BE_ZERO if counts[name]]
    if not counts["acknowledged"]:
        out.append("nothing was acknowledged")
    return out
