"""Messages: ``SendMessage`` (add, edit, delete, deleteOnlyMe), ``GetMessages``
(a history page or one message) and ``GetDelMessages`` (tombstones)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..fields import Fields
from ..status import Unprocessable
from .dialogs import Page, dialog_key

MAX_CONTENT_LENGTH = 4096
MAX_MEDIA_PER_MESSAGE = 32
#: Message keys: server-made ones are 32 hex digits; a client may choose its
#: own (for an idempotent ``add``) in this alphabet and length.
MSGKEY_RE = re.compile(r"^[0-9A-Za-z_-]{8,64}$")

ADD = "add"
EDIT = "edit"
DELETE = "delete"
DELETE_ONLY_ME = "deleteOnlyMe"
OPERATIONS = (ADD, EDIT, DELETE, DELETE_ONLY_ME)
_OPERATIONS_LOWER = {op.lower(): op for op in OPERATIONS}


def check_msgkey(key: str, field: str) -> str:
    if not MSGKEY_RE.match(key):
        raise Unprocessable(f"{field}: 8 to 64 characters of 0-9, a-z, A-Z, '_' or '-'")
    return key


def _msgkey(info: Fields, *, required: bool) -> str | None:
    """The message key.  Optional (``add``): blank is "not filled".  Required
    (the message to edit or delete): a blank key names no message, so it is
    refused like any other malformed key."""
    key = info.str("msgkey", required=required, max_len=256, strip=True)
    if not key and not required:
        return None
    return check_msgkey(key or "", "message.infoMessage.msgkey")


@dataclass(frozen=True, slots=True)
class SendMessage:
    """One ``SendMessage``.  ``msgkey`` is the message to edit/delete/hide, or
    on ``add`` the client's own key that makes a retried send harmless."""

    operation: str
    dialog: str
    msgkey: str | None
    content: str
    media: tuple[str, ...]
    order: tuple[int, ...]
    important: bool = False
    forwarded_key: str | None = None

    @classmethod
    def parse(cls, body: Fields) -> SendMessage:
        operation = _operation(body)
        message = body.map("message")
        info = message.map("infoMessage")
        dialog = dialog_key(info)
        if operation == ADD:
            media, order = _media(message)
            content = info.str("content", required=False, max_len=MAX_CONTENT_LENGTH) or ""
            forwarded = info.str("forwardedKey", required=False, max_len=256, strip=True)
            if forwarded:
                check_msgkey(forwarded, "message.infoMessage.forwardedKey")
            elif not content.strip() and not media:
                raise Unprocessable("message.infoMessage.content: a message needs text or media")
            important = bool(info.bool("important", required=False, default=False))
            return cls(ADD, dialog, _msgkey(info, required=False), content, media, order, important, forwarded or None)
        msgkey = _msgkey(info, required=True)
        content = ""
        if operation == EDIT:
            content = info.str("content", max_len=MAX_CONTENT_LENGTH)
            if not content.strip():
                raise Unprocessable("message.infoMessage.content: must not be empty")
        return cls(operation, dialog, msgkey, content, (), ())


def _operation(body: Fields) -> str:
    raw = body.str("operation", max_len=32, strip=True)
    operation = _OPERATIONS_LOWER.get(raw.lower())
    if operation is None:
        raise Unprocessable(f"operation: must be one of {', '.join(OPERATIONS)}")
    return operation


def _media(message: Fields) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """``message.hash`` (media keys) and ``message.order`` (display order, same
    length; default 1, 2, 3...).  The original sends both as lists."""
    keys = message.str_list("hash", required=False, max_items=MAX_MEDIA_PER_MESSAGE, max_len=128) or []
    if len(set(keys)) != len(keys):
        raise Unprocessable("message.hash: the same media key twice")
    order = message.int_list("order", required=False, max_items=MAX_MEDIA_PER_MESSAGE)
    if order is None:
        order = list(range(1, len(keys) + 1))
    elif len(order) != len(keys):
        raise Unprocessable(f"message.order: {len(order)} positions for {len(keys)} media keys")
    if any(position > 1_000_000 for position in order):
        raise Unprocessable("message.order: positions must be at most 1000000")
    return tuple(keys), tuple(order)


@dataclass(frozen=True, slots=True)
class GetMessages:
    """A history page (``pkDialog``, ``date``, ``take``, ``skip``) or, when
    ``msgkey`` is filled, that one message."""

    dialog: str
    msgkey: str | None
    page: Page

    @classmethod
    def parse(cls, body: Fields) -> GetMessages:
        dialog = dialog_key(body)
        if body.has("msgkey"):
            key = body.str("msgkey", max_len=256, strip=True)
            return cls(dialog, check_msgkey(key, "msgkey"), Page(None, 1, 0))
        return cls(dialog, None, Page.parse(body))


@dataclass(frozen=True, slots=True)
class GetDelMessages:
    dialog: str
    page: Page

    @classmethod
    def parse(cls, body: Fields) -> GetDelMessages:
        return cls(dialog_key(body), Page.parse(body))
