"""Subscribe / Unsubscribe (live push on this connection) and GetEvents (pull)."""

from __future__ import annotations

from typing import Any

from protocol.requests.sync import (
    GET_DIALOG_EVENTS,
    GET_EVENTS,
    SUBSCRIBE,
    UNSUBSCRIBE,
    GetDialogEvents,
    GetEvents,
    Subscribe,
)
from protocol.status import NotFound, ok
from storage import dialogs as dialog_store

from ..push import SCAN_PAGE, dialog_body, event_body
from ..routes import Call, route
from .dialogs import DIALOG_NOT_FOUND
from .messages import MSG_ITEM_BYTES

#: The most bytes one event can take in a page: a message's, plus its envelope.
EVENT_BYTES = MSG_ITEM_BYTES + 256


@route(SUBSCRIBE)
async def subscribe(call: Call) -> dict[str, Any]:
    req = Subscribe.parse(call.body)
    after = await call.app.push.start_position(call.user_id, req.after)
    follows = await call.app.push.dialog_positions(call.user_id, req.dialogs)
    session = call.session
    assert session is not None
    # The session may have been revoked while the log was read: subscribe
    # only once it is known live again, with no await in between.
    await call.app.sessions.confirm(session)
    call.app.push.subscribe(call.conn, call.user_id, after, call.codec, session.id, follows=follows)
    if not follows:
        return ok("Subscribed", LastSeq=after)
    # Where each followed large dialog's stream starts: the client keeps these
    # and names them when it subscribes again.
    return ok("Subscribed", LastSeq=after, Dialogs=[{"PkDialog": k, "Pts": p} for k, p in follows.items()])


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
    async with call.conn.answer_room(size):
        page = await call.app.push.read_page(call.user_id, req.after, req.take)
        return ok(
            "Events",
            Events=[event_body(r) for r in page.rows],
            LastSeq=page.last_seq,
            Through=page.through,
            More=page.through < page.last_seq,
        )


@route(GET_DIALOG_EVENTS)
async def get_dialog_events(call: Call) -> dict[str, Any]:
    """A page of a large dialog's own log (what ``DialogEvent`` pushes carry).
    To a non-member the dialog does not exist; a dialog without a log of its
    own (a small one) has no events here (``LastPts`` 0)."""
    req = GetDialogEvents.parse(call.body)
    if await dialog_store.membership(call.app.db, req.dialog, call.user_id) is None:
        raise NotFound(DIALOG_NOT_FOUND)
    size = EVENT_BYTES * max(req.take, SCAN_PAGE)
    async with call.conn.answer_room(size):
        page = await call.app.push.read_dialog_page(req.dialog, call.user_id, req.after, req.take)
        return ok(
            "Events",
            Events=[dialog_body(r) for r in page.rows],
            LastPts=page.last_pts,
            Through=page.through,
            More=page.through < page.last_pts,
        )
