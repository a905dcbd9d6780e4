"""Answer items: the shapes that appear in more than one answer, or in an answer
and an event, defined once.

The server builds these and turns them into wire maps with ``to_wire()``; the
SDK reads wire maps back with ``from_wire()`` and hands the objects to its
users.  Field names here are Python's (``author_id``, ``created_at``); the wire
names (``idUser``, ``date``) are the original API's and appear only in the two
methods of each class, so the bytes a client in another language sees do not
depend on how the Python side spells things.

Dates are ``datetime`` in UTC here and the API's one text format on the wire
(``format_date``); a date that is not set is ``None`` here and ``""`` there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from .requests.dialogs import format_date


def read_date(text: Any) -> datetime | None:
    """A date of an answer; ``""`` (not set) is None."""
    return datetime.fromisoformat(text) if text else None


def _date(text: Any) -> datetime:
    value = read_date(text)
    if value is None:
        raise ValueError("a date that is always set came empty")
    return value


class MessageItem(NamedTuple):
    """The ``Msg`` item: one message in ``GetMessages``/``GetDelMessages`` pages
    and in ``NewMessage``/``MessageEdited`` events.  A tombstone has
    ``deleted_at`` set and no content, media or forward.

    ``read``: for the reader's own message, whether another member has read it;
    for another's message, whether the reader has.  None where it is not worked
    out (``MessageEdited``); the wire writes that as ``false``, so that the field
    has one type, boolean, in every answer and event (a client in a typed
    language reads it without a special case).  Read back, it is always a bool.  A NamedTuple rather than a
    dataclass: a history page makes fifty of them."""

    key: str
    author_id: int | None
    created_at: datetime
    content: str
    updated_at: datetime | None = None
    deleted_at: datetime | None = None
    forwarded_key: str | None = None
    important: bool = False
    media: tuple[str, ...] = ()
    order: tuple[int, ...] = ()
    read: bool | None = False

    def to_wire(self) -> dict[str, Any]:
        return self.wire(*self)

    @staticmethod
    def wire(key: str, author_id: int | None, created_at: datetime, content: str, updated_at: datetime | None,
             deleted_at: datetime | None, forwarded_key: str | None, important: bool, media: Sequence[str],
             order: Sequence[int], read: bool | None) -> dict[str, Any]:
        """``to_wire`` of the item these fields would make, without making it:
        a history page writes fifty items straight from its rows."""
        return {
            "infoMessage": {
                "msgKey": key,
                "idUser": author_id,
                "date": format_date(created_at),
                "content": content,
                "updateAt": "" if updated_at is None else format_date(updated_at),
                "deleteAt": "" if deleted_at is None else format_date(deleted_at),
                "forwardedKey": forwarded_key or "",
                "read": read is True,
                "important": important,
            },
            "hash": list(media) if media else None,
            "order": list(order) if order else None,
        }

    @classmethod
    def from_wire(cls, item: dict[str, Any]) -> MessageItem:
        info = item["infoMessage"]
        read = info.get("read")
        return cls(
            key=info["msgKey"],
            author_id=info["idUser"],
            created_at=_date(info["date"]),
            content=info["content"],
            updated_at=read_date(info["updateAt"]),
            deleted_at=read_date(info["deleteAt"]),
            forwarded_key=info["forwardedKey"] or None,
            important=bool(info["important"]),
            media=tuple(item["hash"] or ()),
            order=tuple(item["order"] or ()),
            read=read is True,
        )


@dataclass(frozen=True, slots=True)
class DialogItem:
    """One of the caller's dialogs, as ``GetDialogs`` lists it."""

    key: str
    name: str
    photo: str | None
    private: bool
    role: str
    created_at: datetime | None
    last_message_at: datetime | None
    unread: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {
            "hash": self.key,
            "name": self.name,
            "photo": self.photo or "",
            "private": self.private,
            "role": self.role,
            "date": format_date(self.created_at),
            "lastMessageAt": format_date(self.last_message_at),
            "unread": self.unread,
        }

    @classmethod
    def from_wire(cls, item: dict[str, Any]) -> DialogItem:
        return cls(
            key=item["hash"],
            name=item["name"],
            photo=item.get("photo") or None,
            private=bool(item.get("private")),
            role=item.get("role", ""),
            created_at=read_date(item.get("date")),
            last_message_at=read_date(item.get("lastMessageAt")),
            unread=int(item.get("unread") or 0),
        )


@dataclass(frozen=True, slots=True)
class UserItem:
    """A user as others see them: ``GetUser``'s answer (spread beside
    ``Status``) and the items of the friends and block lists (with ``note``,
    the caller's private note about them)."""

    id: int
    nickname: str
    photo: str | None
    note: str | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Id": self.id, "Nickname": self.nickname, "Photo": self.photo or ""}
        if self.note is not None:
            out["Note"] = self.note
        return out

    @classmethod
    def from_wire(cls, item: dict[str, Any]) -> UserItem:
        note = item.get("Note")
        return cls(id=int(item["Id"]), nickname=str(item["Nickname"]), photo=item.get("Photo") or None,
                   note=None if note is None else str(note))


@dataclass(frozen=True, slots=True)
class MediaItem:
    """One file of a dialog's media listing (``GetMedia`` with ``PkDialog``):
    what it is and which message carries it; the bytes come by key."""

    key: str
    extension: str
    size: int
    message_key: str
    created_at: datetime | None

    def to_wire(self) -> dict[str, Any]:
        return {
            "hash": self.key,
            "extension": self.extension,
            "size": self.size,
            "msgKey": self.message_key,
            "date": format_date(self.created_at),
        }

    @classmethod
    def from_wire(cls, item: dict[str, Any]) -> MediaItem:
        return cls(key=item["hash"], extension=item["extension"], size=int(item["size"]),
                   message_key=item["msgKey"], created_at=read_date(item["date"]))


@dataclass(frozen=True, slots=True)
class SessionItem:
    """One logged-in device of the caller's account (``GetSessions``)."""

    id: int
    device_id: str
    os: str
    hostname: str
    client_name: str
    client_version: str
    created_at: datetime
    last_seen_at: datetime
    current: bool

    def to_wire(self) -> dict[str, Any]:
        return {
            "Id": self.id,
            "DeviceId": self.device_id,
            "Os": self.os,
            "Hostname": self.hostname,
            "ClientName": self.client_name,
            "ClientVersion": self.client_version,
            "Created": format_date(self.created_at),
            "LastSeen": format_date(self.last_seen_at),
            "Current": self.current,
        }

    @classmethod
    def from_wire(cls, item: dict[str, Any]) -> SessionItem:
        return cls(
            id=int(item["Id"]),
            device_id=str(item["DeviceId"]),
            os=str(item["Os"]),
            hostname=str(item["Hostname"]),
            client_name=str(item["ClientName"]),
            client_version=str(item["ClientVersion"]),
            created_at=_date(item["Created"]),
            last_seen_at=_date(item["LastSeen"]),
            current=bool(item["Current"]),
        )
