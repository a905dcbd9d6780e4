"""The sessia client SDK.

``connect()`` opens a connection and returns a ``Client`` with one typed async
method per request; errors are typed exceptions (see ``client_sdk.errors``).
Answers come back as the protocol's own item types (``protocol.answers``,
re-exported here) and ``client.events()`` yields ``Update(seq, event)`` with
the typed events of ``protocol.events``.
"""

from protocol.answers import DialogItem, MediaItem, MessageItem, SessionItem, UserItem
from protocol.codecs import Codec
from protocol.events import DialogGap, Event, Typing

from .api.dialogs import DialogMembers
from .api.media import DownloadedFile, MediaFile, MediaRange, Thumbnail, ThumbSize, UploadState, UploadTicket
from .api.search import DialogSearch, MessageHit, PublicDialog
from .client import Client, connect
from .errors import *  # noqa: F403
from .errors import __all__ as _errors
from .subscription import EventStream, Update
from .transport import Push
from .types import ClientBuild, Device, LoginResult

__all__ = [
    "Client",
    "ClientBuild",
    "Codec",
    "Device",
    "DialogGap",
    "DialogItem",
    "DialogMembers",
    "DialogSearch",
    "DownloadedFile",
    "Event",
    "EventStream",
    "LoginResult",
    "MediaFile",
    "MediaItem",
    "MediaRange",
    "MessageHit",
    "MessageItem",
    "PublicDialog",
    "Push",
    "SessionItem",
    "ThumbSize",
    "Thumbnail",
    "Typing",
    "Update",
    "UploadState",
    "UploadTicket",
    "UserItem",
    "connect",
    *_errors,
]
