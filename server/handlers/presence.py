"""MarkRead (read receipts) and Typing (ephemeral indicator).

Both reach the other members, so both spend the account's SendMessage budget
(``--rate-send-message``): a client cannot flood a dialog through them."""

from __future__ import annotations

from typing import Any

from protocol import events as ev
from protocol.requests.presence import MARK_READ, TYPING, MarkRead, Typing
from protocol.status import NotFound, ok
from storage import dialogs as dialog_store
from storage import event_log

from ..routes import Call, route
from .dialogs import member_of


@route(MARK_READ)
async def mark_read(call: Call) -> dict[str, Any]:
    call.app.limits.send_message.check(call.user_id)
    req = MarkRead.parse(call.body)
    dialog_id, _ = await member_of(call, req.dialog)
    async with call.app.db.atomic("presence.mark_read") as tx:
        if await dialog_store.mark_read(tx, dialog_id, call.user_id, req.msgkey) is None:
            raise NotFound("message not found")
        members = [m.user_id for m in await dialog_store.members(tx, dialog_id)]
        payload = {"PkDialog": req.dialog, "Id": call.user_id, "msgKey": req.msgkey}
        pushed = await event_log.append(tx, members, ev.MESSAGES_READ, payload, dialog_key=req.dialog)
    call.app.events.deliver(pushed)
    return ok("Marked as read")


@route(TYPING)
async def typing(call: Call) -> dict[str, Any]:
    call.app.limits.send_message.check(call.user_id)
    req = Typing.parse(call.body)
    dialog_id, _ = await member_of(call, req.dialog)
    members = [m.user_id for m in await dialog_store.members(call.app.db, dialog_id) if m.user_id != call.user_id]
    call.app.events.typing(members, {"PkDialog": req.dialog, "Id": call.user_id}, origin=call.conn)
    return ok("Typing sent")
