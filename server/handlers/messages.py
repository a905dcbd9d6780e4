"""SendMessage (add, edit, delete, deleteOnlyMe), GetMessages, GetDelMessages.

A non-member gets 404 for the dialog and everything in it.  Deleted and hidden
messages never come back in pages; tombstones come from GetDelMessages so a
client can drop its local copy.
"""

from __future__ import annotations

import secrets
from typing import Any

from protocol.requests import GET_DEL_MESSAGES, GET_MESSAGES, SEND_MESSAGE
from protocol.requests.dialogs import format_date
from protocol.requests.messages import ADD, DELETE, EDIT, GetDelMessages, GetMessages, SendMessage
from protocol.status import Conflict, Forbidden, Gone, NotFound, ok
from storage import dialogs as dialog_store
from storage import messages as message_store

from ..dispatch import Call, route
from .dialogs import DIALOG_NOT_FOUND, member_of

MESSAGE_NOT_FOUND = "message not found"


def new_message_key() -> str:
    return secrets.token_hex(16)


def message_out(m: message_store.MessageRow) -> dict[str, Any]:
    """The original's ``Msg`` item; unset dates are empty strings as there.
    ``read`` is not tracked and is always ``""``."""
    return {
        "infoMessage": {
            "msgKey": m.key,
            "idUser": m.author_id,
            "date": format_date(m.created_at),
            "content": m.content,
            "updateAt": format_date(m.updated_at),
            "deleteAt": format_date(m.deleted_at),
            "forwardedKey": m.forwarded_key or "",
            "read": "",
            "important": m.important,
        },
        "hash": list(m.media) or None,
        "order": list(m.positions) or None,
    }


@route(SEND_MESSAGE)
async def send_message(call: Call) -> dict[str, Any]:
    req = SendMessage.parse(call.body)
    if req.operation == ADD:
        return await _add(call, req)
    if req.operation == EDIT:
        return await _edit(call, req)
    if req.operation == DELETE:
        return await _delete(call, req)
    return await _hide(call, req)


async def _add(call: Call, req: SendMessage) -> dict[str, Any]:
    key = req.msgkey or new_message_key()
    sent = await message_store.add_message(
        call.app.db,
        dialog_key=req.dialog,
        author_id=call.user_id,
        key=key,
        content=req.content,
        media=req.media,
        positions=req.order,
    )
    if sent.dialog_id is None:
        raise NotFound(DIALOG_NOT_FOUND)
    if sent.blocked:
        raise Forbidden("cannot send: one of you has blocked the other")
    if sent.missing_media:
        keys = ", ".join(repr(k) for k in sent.missing_media)
        raise NotFound(f"message.hash: media {keys} not found among your uploads")
    if sent.author_id != call.user_id:
        raise Conflict("message.infoMessage.msgkey: already used by another message in this dialog")
    return ok("Message sent" if sent.created else "Message already sent", msgkey=key)


def _check_target(changed: message_store.Changed) -> None:
    if changed.role is None:
        raise NotFound(DIALOG_NOT_FOUND)
    if changed.message_id is None:
        raise NotFound(MESSAGE_NOT_FOUND)


async def _edit(call: Call, req: SendMessage) -> dict[str, Any]:
    assert req.msgkey is not None
    changed = await message_store.edit_message(call.app.db, req.dialog, call.user_id, req.msgkey, req.content)
    _check_target(changed)
    if not changed.done:
        if changed.author_id != call.user_id:
            raise Forbidden("only the author can edit a message")
        raise Gone("the message was deleted")
    return ok("Message edited", msgkey=req.msgkey)


async def _delete(call: Call, req: SendMessage) -> dict[str, Any]:
    assert req.msgkey is not None
    changed = await message_store.delete_message(call.app.db, req.dialog, call.user_id, req.msgkey)
    _check_target(changed)
    if not changed.done:
        if changed.author_id != call.user_id and changed.role not in dialog_store.MANAGERS:
            raise Forbidden("only the author, the owner or an admin can delete a message for everyone")
        raise Gone("the message was already deleted")
    return ok("Message deleted", msgkey=req.msgkey)


async def _hide(call: Call, req: SendMessage) -> dict[str, Any]:
    assert req.msgkey is not None
    changed = await message_store.hide_message(call.app.db, req.dialog, call.user_id, req.msgkey)
    _check_target(changed)
    if changed.deleted:
        raise Gone("the message was deleted")
    return ok("Message deleted for you", msgkey=req.msgkey)


@route(GET_MESSAGES)
async def get_messages(call: Call) -> dict[str, Any]:
    req = GetMessages.parse(call.body)
    dialog_id, _ = await member_of(call, req.dialog)
    if req.msgkey is not None:
        message = await message_store.single(call.app.db, dialog_id, call.user_id, req.msgkey)
        if message is None:
            raise NotFound(MESSAGE_NOT_FOUND)
        return ok("Message found", Msg=[message_out(message)])
    page = req.page
    rows = await message_store.page(
        call.app.db, dialog_id, call.user_id, since=page.since, take=page.take, skip=page.skip
    )
    return ok("List formed", Msg=[message_out(m) for m in rows])


@route(GET_DEL_MESSAGES)
async def get_del_messages(call: Call) -> dict[str, Any]:
    req = GetDelMessages.parse(call.body)
    dialog_id, _ = await member_of(call, req.dialog)
    page = req.page
    rows = await message_store.tombstones(call.app.db, dialog_id, since=page.since, take=page.take, skip=page.skip)
    return ok("List formed", Msg=[message_out(m) for m in rows])
