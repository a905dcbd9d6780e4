"""Subscribe / Unsubscribe (live push on this connection) and GetEvents (pull)."""

from __future__ import annotations

from typing import Any

from protocol.requests.events import GET_EVENTS, SUBSCRIBE, UNSUBSCRIBE, GetEvents, Subscribe
from protocol.status import ok
from storage import events as event_store

from ..dispatch import Call, route
from ..events import event_body
from .messages import MSG_ITEM_BYTES

#: The most bytes one event can take in a page: a message's, plus its envelope.
EVENT_BYTES = MSG_ITEM_BYTES + 256


@route(SUBSCRIBE)
async def subscribe(call: Call) -> dict[str, Any]:
    req = Subscribe.parse(call.body)
    if req.after is None:
        after = await event_store.last_seq(call.app.db, call.user_id)
    else:
        after = req.after
        # Refuse a position older than the log keeps (410 with LastSeq).
        await event_store.read_after(call.app.db, call.user_id, after, 0)
    call.app.events.subscribe(call.conn, call.user_id, after, call.codec)
    return ok("Subscribed", LastSeq=after)


@route(UNSUBSCRIBE)
async def unsubscribe(call: Call) -> dict[str, Any]:
    call.app.events.unsubscribe(call.conn)
    return ok("Unsubscribed")


@route(GET_EVENTS)
async def get_events(call: Call) -> dict[str, Any]:
    req = GetEvents.parse(call.body)
    # Up to 1000 events a page: pipelined pages are built as the connection
    # has room for them (server/answer_room.py).
    size = EVENT_BYTES * req.take
    await call.conn.room_for(size)
    try:
        rows, last = await event_store.read_after(call.app.db, call.user_id, req.after, req.take)
        return ok(
            "Events",
            Events=[event_body(r) for r in rows],
            LastSeq=last,
            More=bool(rows) and rows[-1].seq < last,
        )
    finally:
        call.conn.room.release(size)
