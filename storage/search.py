"""Text search over messages and public dialog names.

Matching is a case-insensitive substring match, ``lower(text) LIKE lower($p)``
with ``$p`` an escaped ``%...%`` pattern (``protocol.requests.search.like_pattern``).
lower() follows the database's Unicode collation, so "ПРИВЕТ" finds
"привет".  Deleted messages never match and hidden ones are filtered per
caller.

Only the caller's dialogs are searched, and no query asks the store for every
match of a word.  Each dialog is first asked about its newest messages (a
bounded, backward range of the primary key): a word that is common in a dialog
is decided there, however long the dialog is.  Only the dialogs the newest
messages did not decide go to the per-dialog text index (migration 0012),
all in one scan that intersects their dialog entries with the pattern's
trigrams, so a rare word costs its few entries.  A pattern too short to have a
trigram ("ab") makes that scan read those dialogs' messages instead, which is
what answering it takes.

The SQL lives in module constants so the scale test can EXPLAIN exactly what
runs; the figures are in docs/performance.md (Search).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .db import Database
from .planning import one_key

#: everyWhere: newest messages of a dialog read before its index entries are
#: asked (one hit decides a dialog), and my dialogs are walked in activity
#: order this many at a time, until the page is full.
EVERYWHERE_WINDOW = 64
EVERYWHERE_CHUNK = 64
#: inDialogs: newest messages read of every dialog first; then, for a dialog
#: that may still hold messages of the page and whose messages so far had
#: the word, up to this many rounds of this many older messages; whatever is
#: still open then goes to the index.
IN_DIALOGS_WINDOW = 64
IN_DIALOGS_READ_ON = 512
IN_DIALOGS_ROUNDS = 3

#: Row ``m`` is not deleted, contains the text $2 and is not hidden for user $1.
_VISIBLE_MATCH = """{m}.deleted_at IS NULL AND lower({m}.content) LIKE lower($2)
    AND NOT EXISTS (
        SELECT 1 FROM message_hidden h
        WHERE h.dialog_id = {m}.dialog_id AND h.user_id = $1 AND h.message_id = {m}.id
    )"""

#: The newest $4 messages of dialog ``t.id``.  The LIMIT keeps the text
#: condition outside, so this is always a short backward range of the primary
#: key, never an index lookup of the whole dialog (``one_key``: planned as
#: such even for a window larger than an average dialog).
_WINDOW = f"""(
        SELECT r.dialog_id, r.id, r.key, r.content, r.deleted_at FROM messages r
        WHERE {one_key("r.dialog_id", "t.id")}
        ORDER BY r.dialog_id DESC, r.id DESC
        LIMIT $4
    )"""

#: $1 user, $2 pattern: my dialogs, most recent activity first, and whether
#: the name matches.
MINE_SQL = """
SELECT d.id, d.key, lower(d.name) LIKE lower($2) AS named
FROM dialog_members dm
JOIN dialogs d ON d.id = dm.dialog_id
WHERE dm.user_id = $1
ORDER BY coalesce(d.last_message_at, d.created_at) DESC, d.id DESC
"""

#: $1 user, $2 pattern, $3 dialog ids, $4 window: those of the dialogs with a
#: visible match among their newest $4 messages.
WINDOW_HIT_SQL = f"""
SELECT t.id
FROM unnest($3::bigint[]) AS t(id)
WHERE EXISTS (SELECT 1 FROM {_WINDOW} w WHERE {_VISIBLE_MATCH.format(m="w")})
"""

#: $1 user, $2 pattern, $3 dialog ids: those of the dialogs with a visible
#: match anywhere, by one scan of the per-dialog text index.
INDEX_HIT_SQL = f"""
SELECT DISTINCT m.dialog_id AS id
FROM messages m
WHERE ARRAY[m.dialog_id] && $3::bigint[] AND {_VISIBLE_MATCH.format(m="m")}
"""

#: $1 user, $2 pattern, $3 dialog ids, $4 their upper bounds (ids, exclusive;
#: NULL: from the newest), $5 lower bound for all (exclusive; NULL: none),
#: $6 rows: per dialog, its newest $6 messages in that range, newest first
#: (a backward range of the primary key, see _WINDOW): how many were read, the
#: lowest id read, and the visible matches among them.
RANGE_MATCHES_SQL = f"""
SELECT t.id AS dialog_id, count(*) AS read, min(w.id) AS lowest,
       coalesce(array_agg(w.id ORDER BY w.id DESC) FILTER (WHERE w.hit), '{{}}') AS ids,
       coalesce(array_agg(w.key ORDER BY w.id DESC) FILTER (WHERE w.hit), '{{}}') AS keys
FROM unnest($3::bigint[], $4::bigint[]) AS t(id, upper)
CROSS JOIN LATERAL (
    SELECT r.id, r.key, {_VISIBLE_MATCH.format(m="r")} AS hit
    FROM messages r
    WHERE {one_key("r.dialog_id", "t.id")}
      AND r.id < coalesce(t.upper, 9223372036854775807) AND r.id > coalesce($5::bigint, 0)
    ORDER BY r.dialog_id DESC, r.id DESC
    LIMIT $6
) w
GROUP BY t.id
"""

#: $1 user, $2 pattern, $3 dialog ids, $4 wanted: each dialog's newest $4
#: visible matches, by one scan of the per-dialog text index.
INDEX_MATCHES_SQL = f"""
SELECT x.dialog_id, x.id, x.key
FROM (
    SELECT m.dialog_id, m.id, m.key,
           row_number() OVER (PARTITION BY m.dialog_id ORDER BY m.id DESC) AS n
    FROM messages m
    WHERE ARRAY[m.dialog_id] && $3::bigint[] AND {_VISIBLE_MATCH.format(m="m")}
) x
WHERE x.n <= $4
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
SELECT d.id, d.key
FROM dialogs d
JOIN dialog_members dm ON dm.dialog_id = d.id AND dm.user_id = $1
WHERE d.key = ANY($2::text[])
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
    """Keys of my dialogs whose name or a visible message matches, most
    recent activity first: the page ``skip``..``skip + take``.

    The dialogs are decided in activity order, a chunk at a time, until the
    page is full.  Once a chunk's newest messages held the word in none of
    its dialogs, the word is rare here and later chunks skip those reads."""
    mine = await db.fetch("search.mine", MINE_SQL, user_id, pattern)
    wanted = skip + take
    found: list[str] = []
    read_windows = True
    for start in range(0, len(mine), EVERYWHERE_CHUNK):
        chunk = mine[start : start + EVERYWHERE_CHUNK]
        open_ids = [r["id"] for r in chunk if not r["named"]]
        hits: set[int] = set()
        if open_ids and read_windows:
            rows = await db.fetch(
                "search.window_hit", WINDOW_HIT_SQL, user_id, pattern, open_ids, EVERYWHERE_WINDOW
            )
            hits = {r["id"] for r in rows}
            read_windows = bool(hits)
        rest = [i for i in open_ids if i not in hits]
        if rest:
            rows = await db.fetch("search.index_hit", INDEX_HIT_SQL, user_id, pattern, rest)
            hits.update(r["id"] for r in rows)
        found += [r["key"] for r in chunk if r["named"] or r["id"] in hits]
        if len(found) >= wanted:
            break
    return found[skip:wanted]


async def public_dialogs(db: Database, user_id: int, pattern: str, *, take: int, skip: int) -> list[PublicDialog]:
    rows = await db.fetch("search.public_dialogs", PUBLIC_DIALOGS_SQL, user_id, pattern, take, skip)
    return [PublicDialog(r["key"], r["name"], r["photo_key"]) for r in rows]


async def my_dialog_ids(db: Database, user_id: int, keys: Sequence[str]) -> dict[int, str]:
    """Those of ``keys`` that are dialogs I am a member of: id -> key."""
    rows = await db.fetch("search.my_dialog_ids", MY_DIALOG_IDS_SQL, user_id, list(keys))
    return {r["id"]: r["key"] for r in rows}


async def in_dialogs(
    db: Database, user_id: int, dialogs: dict[int, str], pattern: str, *, take: int, skip: int
) -> list[Hit]:
    """Visible messages of ``dialogs`` (id -> key) containing the text, newest
    first: the page ``skip``..``skip + take``.  See ``_Candidates``."""
    wanted = skip + take
    found = _Candidates(list(dialogs), wanted)
    reading, rows = list(dialogs), IN_DIALOGS_WINDOW  # first the newest messages of all
    for _ in range(1 + IN_DIALOGS_ROUNDS):
        if not reading:
            break
        floor = found.floor()
        result = await db.fetch(
            "search.range_matches", RANGE_MATCHES_SQL,
            user_id, pattern, reading, [found.lowest.get(d) for d in reading], floor, rows,
        )
        by_dialog = {r["dialog_id"]: r for r in result}
        for d in reading:
            r = by_dialog.get(d)
            if r is not None:
                found.add(d, zip(r["ids"], r["keys"], strict=True))
            if r is None or r["read"] < rows:
                found.read_to(d, None)
            else:
                found.read_to(d, r["lowest"])
        # then on below, in the open dialogs whose messages so far held the word
        reading, rows = [d for d in found.open() if found.matches[d]], IN_DIALOGS_READ_ON
    rest = found.open()
    if rest:
        result = await db.fetch("search.index_matches", INDEX_MATCHES_SQL, user_id, pattern, rest, wanted)
        found.replace(rest, [(r["dialog_id"], r["id"], r["key"]) for r in result])
    return [Hit(key, dialogs[d]) for d, key in found.page(skip, take)]


class _Candidates:
    """inDialogs' bookkeeping: every dialog's matches found so far, and how
    far down each dialog has been read.

    The answer is exact: a message of the page is among the page's ``wanted``
    (take + skip) newest matches overall, so it is among its own dialog's
    ``wanted`` newest, and once ``wanted`` matches are known, none older than
    the ``wanted``-th of them (the floor) can be on the page.  A dialog is done
    when it has ``wanted`` matches or has been read down to the floor (or to
    its first message); one that is not is read on while its messages so far
    held the word, and asked of the index otherwise (a word rare in it)."""

    def __init__(self, dialogs: list[int], wanted: int) -> None:
        self.wanted = wanted
        self.matches: dict[int, list[tuple[int, str]]] = {d: [] for d in dialogs}
        #: lowest id read, for dialogs with messages left below it
        self.lowest: dict[int, int] = {}

    def add(self, dialog: int, matches: Iterable[tuple[int, str]]) -> None:
        self.matches[dialog] += matches

    def read_to(self, dialog: int, lowest: int | None) -> None:
        """``dialog`` has been read from its newest message down to ``lowest``
        and has messages below it; None: nothing of it unread can be on the
        page (read to its first message, or down to the floor, which only
        rises as matches are found)."""
        if lowest is None:
            self.lowest.pop(dialog, None)
        else:
            self.lowest[dialog] = lowest

    def floor(self) -> int | None:
        """The id of the ``wanted``-th newest match found, if that many are."""
        ids = sorted((i for found in self.matches.values() for i, _ in found), reverse=True)
        return ids[self.wanted - 1] if len(ids) >= self.wanted else None

    def open(self) -> list[int]:
        """Dialogs read so far that may still hold messages of the page below
        what was read."""
        floor = self.floor()
        return [
            d for d, lowest in self.lowest.items()
            if len(self.matches[d]) < self.wanted and (floor is None or lowest > floor)
        ]

    def replace(self, dialogs: list[int], matches: list[tuple[int, int, str]]) -> None:
        """The index's answer for ``dialogs``: each one's newest matches."""
        for d in dialogs:
            self.matches[d] = []
            self.lowest.pop(d, None)
        for d, i, key in matches:
            self.matches[d].append((i, key))

    def page(self, skip: int, take: int) -> list[tuple[int, str]]:
        """(dialog, message key) of the page, newest first."""
        ranked = sorted(((i, d, key) for d, found in self.matches.items() for i, key in found), reverse=True)
        return [(d, key) for _, d, key in ranked[skip : skip + take]]
