"""Rate-limit budgets kept in PostgreSQL, so that every server process that
shares the database spends from the same budget (``--workers``, nodes).

The algorithm is GCRA, the token bucket written as one timestamp per key:
``tat``, the moment the key's budget is whole again.  An attempt at ``now``
with ``interval`` seconds per attempt and a burst of ``window`` seconds'
worth is allowed when ``max(tat, now) + interval <= now + window``, and moves
``tat`` there.  That test and the move are one ``INSERT ... ON CONFLICT DO
UPDATE ... WHERE``: the row lock orders concurrent attempts on one key, and a
refused attempt changes nothing, so attempts spread over processes get no
more than one budget.  The clock is the database's, one for every process.
"""

from __future__ import annotations

from .db import Database

_SPEND_SQL = """
INSERT INTO rate_limits AS r (limiter, key, tat)
VALUES ($1, $2, extract(epoch FROM statement_timestamp())::float8 + $3)
ON CONFLICT (limiter, key) DO UPDATE
    SET tat = greatest(r.tat, excluded.tat - $3) + $3
    WHERE greatest(r.tat, excluded.tat - $3) + $3 <= excluded.tat - $3 + $4
RETURNING true
"""

_WAIT_SQL = """
SELECT tat + $3 - $4 - extract(epoch FROM statement_timestamp())::float8
FROM rate_limits WHERE limiter = $1 AND key = $2
"""

_FORGET_SQL = "DELETE FROM rate_limits WHERE tat < extract(epoch FROM statement_timestamp())::float8"


async def spend(db: Database, limiter: str, key: str, interval: float, window: float) -> float:
    """Spend one attempt of ``key`` under ``limiter``: 0.0 if allowed, else
    the seconds until one will be (nothing is spent then).  ``interval`` is
    the seconds one attempt costs, ``window`` the budget in seconds (count
    attempts per window: ``interval = window / count``)."""
    if await db.fetchval("rate_limits.spend", _SPEND_SQL, limiter, key, interval, window):
        return 0.0
    wait = await db.fetchval("rate_limits.wait", _WAIT_SQL, limiter, key, interval, window)
    # A refusal raced by the row's deletion or a clock tick: at most one interval.
    return float(wait) if wait is not None and wait > 0 else interval


async def forget_whole(db: Database) -> int:
    """Delete the rows whose budget is whole again (they hold nothing); the
    number deleted.  Safe to run from every process at once."""
    status = await db.execute("rate_limits.forget", _FORGET_SQL)
    return int(status.rsplit(" ", 1)[-1])
