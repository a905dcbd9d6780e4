"""Subscribe / Unsubscribe (live push on this connection) and GetEvents (pull)."""

from __future__ import annotations

from typing import Any

from protocol.requests.sync import GET_EVENTS, SUBSCRIBE, UNSUBSCRIBE, GetEvents, Subscribe
from protocol.status import ok

from ..push import SCAN_PAGE, event_body
from ..routes import Call, route
from .messages import MSG_ITEM_BYTES

#: The most bytes one event can take in a page: a message's, plus its envelope.
EVENT_BYTES = MSG_ITEM_BYTES + 256


@route(SUBSCRIBE)
async def subscribe(call: Call) -> dict[str, Any]:
    req = Subscribe.parse(call.body)
    after = await call.app.push.start_position(call.user_id, req.after)
    session = call.session
    assert session is not None
    # The session may have been revoked while the log was read: subscribe
    # only once it is known live again, with no await in between.
    await call.app.sessions.confirm(session)
    call.app.push.subscribe(call.conn, call.user_id, after, call.codec, session.id)
    return ok("Subscribed", LastSeq=after)


@route(UNSUBSCRIBE)
async def unsubscribe(call: Call) -> dict[str, Any]:
    call.app.push.unsubscribe(call.conn)
    return ok("Unsubscribed")


@route(GET_EVENTS)
async def get_events(call: Call) -> dict[str, Any]:
    req = GetEvents.parse(call.body)
    # Pipelined pages are built as the connection has room for them
    # (server/answer_room.py): room for a whole scan of the log.
    size = EVENT_BYTES * max(req.take, SCAN_PAGE)
    await call.conn.room_for(size)
    try:
        page = await call.app.push.read_page(call.user_id, req.after, req.take)
        return ok(
            "Events",
            Events=[event_body(r) for r in page.rows],
            LastSeq=page.last_seq,
            Through=page.through,
            More=page.through < page.last_seq,
        )
    finally:
        call.conn.room.release(size)
