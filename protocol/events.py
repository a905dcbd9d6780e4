"""Events: the typed shapes of what ``Event`` pushes and ``GetEvents`` pages carry.

Every event body on the wire is ``{"Seq": int, "Kind": str, ...payload}``;
``Seq`` is per user, strictly increasing, without gaps in what a subscriber
receives.  Each kind below is one frozen dataclass: its ``KIND`` (the wire's
``Kind``), its fields in Python's names, ``to_payload()`` (the wire map, keys
in the order the wire has always had them) and ``from_payload()``.  The server
builds these, the SDK parses into them, and docs/protocol.md lists the same
fields.

Three properties tell the event log what it needs to know without reading the
payload: ``dialog`` (the dialog an event is about: a member who leaves stops
seeing its events), ``message`` (the key of the message it carries: a read of
the log shows that message as it is now) and ``subject`` (the user an event
is about, where a removed member must still see it: their own removal).

Besides logged events, three pushes carry no ``Seq``: ``Typing`` (ephemeral),
``Resync`` (subscribe again from ``LastSeq``) and ``DialogGap`` (a large
dialog's log no longer reaches back to the follower's ``Pts``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from .answers import MessageItem, read_date
from .requests.dialogs import format_date

#: Push frame names (the frame's name field).
PUSH_EVENT = "Event"
PUSH_RESYNC = "Resync"  # LastSeq: subscribe again from there
PUSH_TYPING = "Typing"  # PkDialog, Id: ephemeral, no Seq
PUSH_DIALOG_EVENT = "DialogEvent"  # PkDialog, Pts, Kind, ...: an event of a large dialog's own log
PUSH_DIALOG_GAP = "DialogGap"  # PkDialog, Pts: a large dialog's log no longer reaches back; continue after Pts


@dataclass(frozen=True, slots=True)
class Event:
    """What every event kind has: a wire name and a payload."""

    KIND: ClassVar[str] = ""

    @property
    def dialog(self) -> str | None:
        return None

    @property
    def message(self) -> str | None:
        return None

    @property
    def subject(self) -> int | None:
        return None

    def to_payload(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Event:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class DialogEvent(Event):
    """An event about one dialog (``PkDialog``)."""

    dialog_key: str

    @property
    def dialog(self) -> str | None:
        return self.dialog_key


# -- messages -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageEvent(DialogEvent):
    """An event that carries a message (``Msg``): a read of the log shows the
    copy as the message is now (edited text, or a tombstone)."""

    item: MessageItem

    @property
    def message(self) -> str | None:
        return self.item.key

    def to_payload(self) -> dict[str, Any]:
        return {"PkDialog": self.dialog_key, "Msg": self.item.to_wire()}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> MessageEvent:
        return cls(payload["PkDialog"], MessageItem.from_wire(payload["Msg"]))


@dataclass(frozen=True, slots=True)
class NewMessage(MessageEvent):
    KIND: ClassVar[str] = "NewMessage"


@dataclass(frozen=True, slots=True)
class MessageEdited(MessageEvent):
    """The message as it is after the edit."""

    KIND: ClassVar[str] = "MessageEdited"


@dataclass(frozen=True, slots=True)
class MessageDeleted(DialogEvent):
    """Deleted for everyone."""

    KIND: ClassVar[str] = "MessageDeleted"
    key: str
    deleted_at: datetime | None

    def to_payload(self) -> dict[str, Any]:
        return {"PkDialog": self.dialog_key, "msgKey": self.key, "deleteAt": format_date(self.deleted_at)}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> MessageDeleted:
        return cls(payload["PkDialog"], payload["msgKey"], read_date(payload["deleteAt"]))


@dataclass(frozen=True, slots=True)
class MessageHidden(DialogEvent):
    """Deleted for me only (``deleteOnlyMe``): to the hider's own devices."""

    KIND: ClassVar[str] = "MessageHidden"
    key: str

    def to_payload(self) -> dict[str, Any]:
        return {"PkDialog": self.dialog_key, "msgKey": self.key}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> MessageHidden:
        return cls(payload["PkDialog"], payload["msgKey"])


@dataclass(frozen=True, slots=True)
class MessagesRead(DialogEvent):
    """``reader`` has read everything up to message ``key``."""

    KIND: ClassVar[str] = "MessagesRead"
    reader: int
    key: str

    def to_payload(self) -> dict[str, Any]:
        return {"PkDialog": self.dialog_key, "Id": self.reader, "msgKey": self.key}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> MessagesRead:
        return cls(payload["PkDialog"], int(payload["Id"]), payload["msgKey"])


# -- dialogs ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DialogCreated(DialogEvent):
    KIND: ClassVar[str] = "DialogCreated"
    name: str
    photo: str | None
    private: bool
    owner: int

    def to_payload(self) -> dict[str, Any]:
        return {"PkDialog": self.dialog_key, "name": self.name, "photo": self.photo or "", "private": self.private,
                "Owner": self.owner}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> DialogCreated:
        return cls(payload["PkDialog"], payload["name"], payload["photo"] or None, bool(payload["private"]),
                   int(payload["Owner"]))


@dataclass(frozen=True, slots=True)
class DialogChanged(DialogEvent):
    """Name, photo and privacy as they now are."""

    KIND: ClassVar[str] = "DialogChanged"
    name: str
    photo: str | None
    private: bool

    def to_payload(self) -> dict[str, Any]:
        return {"PkDialog": self.dialog_key, "name": self.name, "photo": self.photo or "", "private": self.private}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> DialogChanged:
        return cls(payload["PkDialog"], payload["name"], payload["photo"] or None, bool(payload["private"]))


@dataclass(frozen=True, slots=True)
class MembersAdded(DialogEvent):
    KIND: ClassVar[str] = "MembersAdded"
    ids: tuple[int, ...]

    def to_payload(self) -> dict[str, Any]:
        return {"PkDialog": self.dialog_key, "Ids": list(self.ids)}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> MembersAdded:
        return cls(payload["PkDialog"], tuple(int(i) for i in payload["Ids"]))


@dataclass(frozen=True, slots=True)
class MemberKicked(DialogEvent):
    """``removed`` is out of the dialog; ``by`` removed them (themselves: they left).
    The removed member keeps this one event of a dialog they no longer see."""

    KIND: ClassVar[str] = "MemberKicked"
    removed: int
    by: int

    @property
    def subject(self) -> int | None:
        return self.removed

    def to_payload(self) -> dict[str, Any]:
        return {"PkDialog": self.dialog_key, "Id": self.removed, "By": self.by}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> MemberKicked:
        return cls(payload["PkDialog"], int(payload["Id"]), int(payload["By"]))


@dataclass(frozen=True, slots=True)
class FollowDialog(DialogEvent):
    """In the user's own log: from now on this (large) dialog's events come on
    its own stream, ``DialogEvent`` pushes numbered by ``Pts``, starting after
    ``pts``.  Sent to every member when a dialog grows past the size where it
    keeps its own log, and to each member who joins one that has."""

    KIND: ClassVar[str] = "FollowDialog"
    pts: int

    @property
    def dialog(self) -> str | None:
        return None  # the member's own event: not about the dialog's history

    def to_payload(self) -> dict[str, Any]:
        return {"PkDialog": self.dialog_key, "Pts": self.pts}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> FollowDialog:
        return cls(payload["PkDialog"], int(payload["Pts"]))


# -- friends and blocks -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FriendEvent(Event):
    """Sent to both users: ``from_id`` acted, ``to_id`` is the other one."""

    from_id: int
    to_id: int

    def to_payload(self) -> dict[str, Any]:
        return {"From": self.from_id, "To": self.to_id}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> FriendEvent:
        return cls(int(payload["From"]), int(payload["To"]))


@dataclass(frozen=True, slots=True)
class FriendRequest(FriendEvent):
    KIND: ClassVar[str] = "FriendRequest"


@dataclass(frozen=True, slots=True)
class FriendAccepted(FriendEvent):
    KIND: ClassVar[str] = "FriendAccepted"


@dataclass(frozen=True, slots=True)
class FriendRequestCancelled(FriendEvent):
    KIND: ClassVar[str] = "FriendRequestCancelled"


@dataclass(frozen=True, slots=True)
class FriendRemoved(FriendEvent):
    KIND: ClassVar[str] = "FriendRemoved"


@dataclass(frozen=True, slots=True)
class BlockEvent(Event):
    """To the blocker's own devices only: ``user_id`` is whom they (un)blocked."""

    user_id: int

    def to_payload(self) -> dict[str, Any]:
        return {"Id": self.user_id}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> BlockEvent:
        return cls(int(payload["Id"]))


@dataclass(frozen=True, slots=True)
class Blocked(BlockEvent):
    KIND: ClassVar[str] = "Blocked"


@dataclass(frozen=True, slots=True)
class Unblocked(BlockEvent):
    KIND: ClassVar[str] = "Unblocked"


#: Every logged event kind by its wire name.
KINDS: dict[str, type[Event]] = {
    cls.KIND: cls
    for cls in (
        NewMessage, MessageEdited, MessageDeleted, MessageHidden, MessagesRead,
        DialogCreated, DialogChanged, MembersAdded, MemberKicked, FollowDialog,
        FriendRequest, FriendAccepted, FriendRequestCancelled, FriendRemoved, Blocked, Unblocked,
    )
}

# The kind names, for code that needs only the name.
NEW_MESSAGE = NewMessage.KIND
MESSAGE_EDITED = MessageEdited.KIND
MESSAGE_DELETED = MessageDeleted.KIND
MESSAGE_HIDDEN = MessageHidden.KIND
MESSAGES_READ = MessagesRead.KIND
DIALOG_CREATED = DialogCreated.KIND
DIALOG_CHANGED = DialogChanged.KIND
MEMBERS_ADDED = MembersAdded.KIND
MEMBER_KICKED = MemberKicked.KIND
FOLLOW_DIALOG = FollowDialog.KIND
FRIEND_REQUEST = FriendRequest.KIND
FRIEND_ACCEPTED = FriendAccepted.KIND
FRIEND_REQUEST_CANCELLED = FriendRequestCancelled.KIND
FRIEND_REMOVED = FriendRemoved.KIND
BLOCKED = Blocked.KIND
UNBLOCKED = Unblocked.KIND


def parse_event(kind: str, payload: dict[str, Any]) -> Event | None:
    """The typed event of a wire ``Kind`` and payload; None for a kind this
    version does not know (a newer server may send more kinds)."""
    cls = KINDS.get(kind)
    return None if cls is None else cls.from_payload(payload)


@dataclass(frozen=True, slots=True)
class Typing:
    """Push ``Typing``: ``user_id`` is typing in ``dialog_key``.  Not logged, no ``Seq``."""

    dialog_key: str
    user_id: int

    def to_payload(self) -> dict[str, Any]:
        return {"PkDialog": self.dialog_key, "Id": self.user_id}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Typing:
        return cls(payload["PkDialog"], int(payload["Id"]))


@dataclass(frozen=True, slots=True)
class DialogGap:
    """Push ``DialogGap``: the events of the large dialog ``dialog_key`` after
    the follower's position are no longer kept (its log was trimmed while the
    client was away).  The stream continues after ``pts``; the client reloads
    the dialog's messages (``GetMessages``) to fill what it missed.  Not
    logged, no ``Seq``."""

    dialog_key: str
    pts: int

    def to_payload(self) -> dict[str, Any]:
        return {"PkDialog": self.dialog_key, "Pts": self.pts}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> DialogGap:
        return cls(str(payload["PkDialog"]), int(payload["Pts"]))
