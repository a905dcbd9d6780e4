"""SQL idioms that steer PostgreSQL's planner where its estimates mislead it.

Kept in one place because the same trap appears in several areas: a lookup of
one dialog's (or one user's) rows whose key comes from another row of the
query (a LATERAL join, a CTE) is estimated as an *average* dialog, a few
hundred rows at most.  For a LIMIT above that estimate the planner prefers a
bitmap scan and a sort of every row of the dialog to an ordered index scan
that stops at the limit, which for a dialog of 100 000 messages is a read and
an on-disk sort of all of them (measured: a history page at skip 1 000 took
167 ms instead of ~2 ms).
"""

from __future__ import annotations


def one_key(column: str, value: str) -> str:
    """``column = value``, written as the range ``BETWEEN value AND value``.

    The result is the same, but the planner estimates a range as a share of
    the whole table rather than as an average key, so it keeps the ordered
    index scan that stops after LIMIT rows.  For the index's order to apply,
    the query orders by ``column`` too (a constant here), e.g.
    ``ORDER BY m.dialog_id DESC, m.id DESC``."""
    return f"{column} BETWEEN {value} AND {value}"
