"""Subscribe / Unsubscribe (live push on this connection) and GetEvents (pull)."""

from __future__ import annotations

from typing import Any

from protocol.requests.events import GET_EVENTS, SUBSCRIBE, UNSUBSCRIBE, GetEvents, Subscribe
from protocol.status import ok
from storage import event_log

from ..events import event_body
from ..routes import Call, route
from .messages import MSG_ITEM_BYTES

#: The most bytes one event can take in a page: a message's, plus its envelope.
EVENT_BYTES = MSG_ITEM_BYTES + 256
#: Rows GetEvents reads at least per round trip to the log, and round trips at most per request.
SCAN_PAGE = 100
MAX_SCANS = 10


@route(SUBSCRIBE)
async def subscribe(call: Call) -> dict[str, Any]:
    req = Subscribe.parse(call.body)
    if req.after is None:
        after = await event_log.last_seq(call.app.db, call.user_id)
    else:
        after = req.after
        # Refuse a position older than the log keeps (410 with LastSeq).
        await event_log.read_after(call.app.db, call.user_id, after, 0)
    session = call.session
    assert session is not None
    # The session may have been revoked while the log was read: subscribe
    # only once it is known live again, with no await in between.
    await call.app.sessions.confirm(session)
    call.app.events.subscribe(call.conn, call.user_id, after, call.codec, session.id)
    return ok("Subscribed", LastSeq=after)


@route(UNSUBSCRIBE)
async def unsubscribe(call: Call) -> dict[str, Any]:
    call.app.events.unsubscribe(call.conn)
    return ok("Unsubscribed")


@route(GET_EVENTS)
async def get_events(call: Call) -> dict[str, Any]:
    req = GetEvents.parse(call.body)
    # Events the reader may no longer see are passed over, a scan page at a
    # time (at least SCAN_PAGE rows, at most MAX_SCANS reads per request, so
    # that a long run of them costs few reads and a bounded amount of work);
    # ``Through`` tells where to continue.  Pipelined pages are built as the
    # connection has room for them (server/answer_room.py).
    scan = max(req.take, SCAN_PAGE)
    size = EVENT_BYTES * scan
    await call.conn.room_for(size)
    try:
        rows: list[event_log.EventRow] = []
        after = req.after
        for _ in range(MAX_SCANS):
            page = await event_log.read_after(call.app.db, call.user_id, after, scan)
            rows += page.rows
            if len(rows) >= req.take or page.through >= page.last_seq or page.through == after:
                break
            after = page.through
        through = rows[req.take - 1].seq if len(rows) >= req.take else page.through
        del rows[req.take:]
        return ok(
            "Events",
            Events=[event_body(r) for r in rows],
            LastSeq=page.last_seq,
            Through=through,
            More=through < page.last_seq,
        )
    finally:
        call.conn.room.release(size)
