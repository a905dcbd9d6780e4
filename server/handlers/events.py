"""Subscribe / Unsubscribe (live push on this connection) and GetEvents (pull)."""

from __future__ import annotations

from typing import Any

from protocol.requests.events import GET_EVENTS, SUBSCRIBE, UNSUBSCRIBE, GetEvents, Subscribe
from protocol.status import ok
from storage import events as event_store

from ..dispatch import Call, route
from ..events import CATCH_UP_PAGE as SCAN_PAGE
from ..events import event_body


@route(SUBSCRIBE)
async def subscribe(call: Call) -> dict[str, Any]:
    req = Subscribe.parse(call.body)
    if req.after is None:
        after = await event_store.last_seq(call.app.db, call.user_id)
    else:
        after = req.after
        # Refuse a position older than the log keeps (410 with LastSeq).
        await event_store.read_after(call.app.db, call.user_id, after, 0)
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
    rows: list[event_store.EventRow] = []
    after = req.after
    while True:  # events the reader may no longer see are passed over, a scan page at a time
        page = await event_store.read_after(call.app.db, call.user_id, after, max(req.take, SCAN_PAGE))
        rows += page.rows
        if len(rows) >= req.take or page.through >= page.last_seq or page.through == after:
            break
        after = page.through
    del rows[req.take:]
    return ok(
        "Events",
        Events=[event_body(r) for r in rows],
        LastSeq=page.last_seq,
        More=bool(rows) and rows[-1].seq < page.last_seq,
    )
