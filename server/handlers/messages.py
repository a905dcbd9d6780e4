"""SendMessage (add, edit, delete, deleteOnlyMe), GetMessages, GetDelMessages.

A non-member gets 404 for the dialog and everything in it.  Deleted and hidden
messages never come back in pages; tombstones come from GetDelMessages so a
client can drop its local copy.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from protocol import events as ev
from protocol.answers import MessageItem
from protocol.requests import GET_DEL_MESSAGES, GET_MESSAGES, SEND_MESSAGE
from protocol.requests.messages import (
    ADD,
    DELETE,
    EDIT,
    MAX_CONTENT_LENGTH,
    MAX_MEDIA_PER_MESSAGE,
    GetDelMessages,
    GetMessages,
    SendMessage,
)
from protocol.status import Conflict, Forbidden, Gone, NotFound, ok
from storage import dialogs as dialog_store
from storage import messages as message_store
from storage.messages import MessageRow

from ..changes import Change
from ..history_cache import PAGE
from ..routes import Call, route
from .dialogs import DIALOG_NOT_FOUND, member_of

MESSAGE_NOT_FOUND = "message not found"
#: The most bytes one ``Msg`` item can take in an answer: its text at up to 4
#: bytes a character, its media keys and positions, the other fields.  Pages
#: take room for this many per message (server/answer_room.py).
MSG_ITEM_BYTES = 4 * MAX_CONTENT_LENGTH + MAX_MEDIA_PER_MESSAGE * 140 + 512


def new_message_key() -> str:
    return secrets.token_hex(16)


def message_out(m: message_store.MessageRow, read: bool | None = None) -> dict[str, Any]:
    """The ``Msg`` item of a stored message (``MessageItem``).  ``read``: for
    a reader's own message, whether another member has read it; for others'
    messages, whether the reader has (None where not worked out, written as ``false``)."""
    return message_item(m, read).to_wire()


@route(SEND_MESSAGE)
async def send_message(call: Call) -> dict[str, Any]:
    call.app.limits.send_message.check(call.user_id)
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
    content = req.content
    media: Sequence[str] = req.media
    positions: Sequence[int] = req.order
    forwarded_media: Sequence[str] = ()
    if req.forwarded_key is not None:
        source = await message_store.find_visible(call.app.db, call.user_id, req.forwarded_key)
        if source is None:
            raise NotFound("message.infoMessage.forwardedKey: message not found")
        content = content or source.content
        if not media:
            media, positions, forwarded_media = source.media, source.positions, source.media
    created_at = datetime.now(UTC)
    item = MessageItem(key, call.user_id, created_at, content, None, None, req.forwarded_key, req.important,
                       tuple(media), tuple(positions), read=False)
    body = ev.NewMessage(req.dialog, item).to_payload()
    # The writer pushes the events it commits with ``body``; the log stores a
    # reference to the message, read back in the same shape (server/push.py ``shown``).
    sent = await call.app.message_writer.add(message_store.MessageInsert(
        dialog_key=req.dialog,
        author_id=call.user_id,
        key=key,
        content=content,
        created_at=created_at,
        media=tuple(media),
        positions=tuple(positions),
        forwarded_media=tuple(forwarded_media),
        forwarded_key=req.forwarded_key,
        important=req.important,
    ), body)
    if sent.dialog_id is None:
        raise NotFound(DIALOG_NOT_FOUND)
    if sent.blocked:
        raise Forbidden("cannot send: one of you has blocked the other")
    if sent.source_gone:
        raise NotFound("message.infoMessage.forwardedKey: message not found")
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
    async with call.app.changes("messages.edit") as ch:
        changed = await message_store.edit_message(ch.db, req.dialog, call.user_id, req.msgkey, req.content)
        _check_target(changed)
        if not changed.done:
            if changed.author_id != call.user_id:
                raise Forbidden("only the author can edit a message")
            raise Gone("the message was deleted")
        dialog_id, row = await _changed_row(ch, changed)
        await ch.emit_to_dialog(dialog_id, ev.MessageEdited(req.dialog, message_item(row)))
    return ok("Message edited", msgkey=req.msgkey)


def message_item(m: MessageRow, read: bool | None = None) -> MessageItem:
    """The ``Msg`` item of a stored message, as answers and events carry it."""
    return MessageItem(m.key, m.author_id, m.created_at, m.content, m.updated_at, m.deleted_at, m.forwarded_key,
                       m.important, tuple(m.media), tuple(m.positions), read)


async def _changed_row(ch: Change, changed: message_store.Changed) -> tuple[int, MessageRow]:
    """The dialog id, and the message as the change left it (what its event tells)."""
    assert changed.dialog_id is not None and changed.message_id is not None
    row = await message_store.by_id(ch.db, changed.dialog_id, changed.message_id)
    assert row is not None
    return changed.dialog_id, row


async def _delete(call: Call, req: SendMessage) -> dict[str, Any]:
    assert req.msgkey is not None
    async with call.app.changes("messages.delete") as ch:
        changed = await message_store.delete_message(ch.db, req.dialog, call.user_id, req.msgkey)
        _check_target(changed)
        if not changed.done:
            if changed.author_id != call.user_id and changed.role not in dialog_store.MANAGERS:
                raise Forbidden("only the author, the owner or an admin can delete a message for everyone")
            raise Gone("the message was already deleted")
        dialog_id, row = await _changed_row(ch, changed)
        await ch.emit_to_dialog(dialog_id, ev.MessageDeleted(req.dialog, row.key, row.deleted_at))
    return ok("Message deleted", msgkey=req.msgkey)


async def _hide(call: Call, req: SendMessage) -> dict[str, Any]:
    assert req.msgkey is not None
    async with call.app.changes("messages.hide") as ch:
        changed = await message_store.hide_message(ch.db, req.dialog, call.user_id, req.msgkey)
        _check_target(changed)
        if changed.deleted:
            raise Gone("the message was deleted")
        if changed.done:  # only my own devices learn of it
            await ch.emit([call.user_id], ev.MessageHidden(req.dialog, req.msgkey))
    return ok("Message deleted for you", msgkey=req.msgkey)


@route(GET_MESSAGES)
async def get_messages(call: Call) -> dict[str, Any]:
    req = GetMessages.parse(call.body)
    # A page can be megabytes: pipelined pages are built as the connection
    # has room for them, not all at once.
    size = MSG_ITEM_BYTES * (1 if req.msgkey is not None else req.page.take)
    async with call.conn.answer_room(size):
        return await _messages(call, req)


async def _messages(call: Call, req: GetMessages) -> dict[str, Any]:
    page = req.page
    if req.msgkey is None and page.since is None:  # the hot read
        pages = call.app.push.pages
        if pages.enabled and page.skip == 0 and page.take <= PAGE:
            shared = await _shared_newest(call, req.dialog, page.take)
            if shared is not None:
                return ok("List formed", Msg=shared)
        found = await message_store.newest_page(call.app.db, req.dialog, call.user_id, take=page.take, skip=page.skip)
        if found is None:
            raise NotFound(DIALOG_NOT_FOUND)
        return ok("List formed", Msg=page_out(found))
    reader = await dialog_store.reader(call.app.db, req.dialog, call.user_id)
    if reader is None:
        raise NotFound(DIALOG_NOT_FOUND)
    dialog_id = reader.dialog_id
    if req.msgkey is not None:
        message = await message_store.single(call.app.db, dialog_id, call.user_id, req.msgkey)
        if message is None:
            raise NotFound(MESSAGE_NOT_FOUND)
        rows = [message]
    else:
        assert page.since is not None  # the newest page was answered above
        rows = await message_store.page_since(
            call.app.db, dialog_id, call.user_id, since=page.since, take=page.take, skip=page.skip
        )
    mine, others, me = reader.mine, reader.others, call.user_id
    out = [message_out(m, m.id <= (others if m.author_id == me else mine)) for m in rows]
    return ok("Message found" if req.msgkey is not None else "List formed", Msg=out)


async def _shared_newest(call: Call, dialog: str, take: int) -> list[dict[str, Any]] | None:
    """The newest page from the page every member shares (server/history_cache.py),
    with this reader's read marks; None for a reader who has hidden messages in
    the dialog (the database answers them, leaving those out)."""
    found = await dialog_store.reader_with_hides(call.app.db, dialog, call.user_id)
    if found is None:
        raise NotFound(DIALOG_NOT_FOUND)
    reader, hides = found
    if hides:
        return None
    pages = call.app.push.pages
    rows = pages.get(reader.dialog_id)
    if rows is None:
        version = pages.version(reader.dialog_id)
        rows = await message_store.shared_newest(call.app.db, reader.dialog_id, PAGE)
        pages.put(reader.dialog_id, version, rows)
    me, mine, others = call.user_id, reader.mine, reader.others
    wire = MessageItem.wire
    return [
        wire(key, author_id, created_at, content, updated_at, deleted_at, forwarded_key, important, media, positions,
             message_id <= (others if author_id == me else mine))
        for message_id, key, author_id, content, created_at, updated_at, deleted_at, forwarded_key, important, media,
        positions, _ in rows[:take]
    ]


def page_out(rows: Sequence[message_store.MessageRow]) -> list[dict[str, Any]]:
    """The ``Msg`` items of a page, each row's own ``read`` included (the
    newest page works it out in its query).  The hot read: the rows are
    unpacked by position rather than by attribute."""
    wire = MessageItem.wire
    return [
        wire(key, author_id, created_at, content, updated_at, deleted_at, forwarded_key, important, media,
             positions, read)
        for _, key, author_id, content, created_at, updated_at, deleted_at, forwarded_key, important, media,
        positions, read in rows
    ]


@route(GET_DEL_MESSAGES)
async def get_del_messages(call: Call) -> dict[str, Any]:
    req = GetDelMessages.parse(call.body)
    dialog_id, _ = await member_of(call, req.dialog)
    page = req.page
    rows = await message_store.tombstones(call.app.db, dialog_id, since=page.since, take=page.take, skip=page.skip)
    return ok("List formed", Msg=[message_out(m) for m in rows])
