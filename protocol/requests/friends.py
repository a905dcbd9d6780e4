"""Typed shapes of the friends requests: ``RequestFrBl`` and its 11 operations.

One request name carries every friends and block-list operation; the
``operation`` field says which.  Operations that act on one user take ``id``
(and ``description``, the caller's private note, where it applies); the list
operations take ``take`` and ``skip``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..fields import Fields
from ..status import BadRequest, Unprocessable

APPEND = "append"
ACCEPT = "accept"
CANCEL = "cancel"
REMOVE = "remove"
UPDATE = "update"
GET_FRIEND = "getFriend"
GET_INCOMING = "getIncoming"
GET_OUTCOMING = "getOutcoming"
ADD_BLOCK = "addBlock"
DEL_BLOCK = "delBlock"
LIST_BLOCKS = "listBlocks"

#: Operations on one user (``id``), in the original's order.
USER_OPERATIONS: tuple[str, ...] = (APPEND, ACCEPT, CANCEL, REMOVE, UPDATE, ADD_BLOCK, DEL_BLOCK)
#: Paged list operations (``take``, ``skip``).
LIST_OPERATIONS: tuple[str, ...] = (GET_FRIEND, GET_INCOMING, GET_OUTCOMING, LIST_BLOCKS)
OPERATIONS: tuple[str, ...] = (
    APPEND, ACCEPT, CANCEL, REMOVE, UPDATE, GET_FRIEND, GET_INCOMING, GET_OUTCOMING, ADD_BLOCK, DEL_BLOCK, LIST_BLOCKS,
)
_BY_LOWER = {op.lower(): op for op in OPERATIONS}

MAX_NOTE_LENGTH = 500
DEFAULT_TAKE = 50
MAX_TAKE = 100
MAX_SKIP = 2**31 - 1
MAX_USER_ID = 2**63 - 1


def parse_operation(body: Fields) -> str:
    """The canonical operation name.  Matched case-insensitively, like field
    names (``getfriend`` is ``getFriend``); anything else is a 400 that lists
    the valid names so a client developer sees the fix at once."""
    raw = body.str("operation", max_len=64, strip=True)
    operation = _BY_LOWER.get(raw.lower())
    if operation is None:
        raise BadRequest(f"operation: unknown operation {raw!r}; valid operations: {', '.join(OPERATIONS)}")
    return operation


@dataclass(frozen=True, slots=True)
class UserOperation:
    """``append``, ``accept``, ``cancel``, ``remove``, ``update``, ``addBlock``,
    ``delBlock``: one target user and, for some, the caller's note on them.

    ``note`` is None when ``description`` was not sent; ``update`` requires it
    (an empty string clears the note)."""

    operation: str
    user_id: int
    note: str | None

    @classmethod
    def parse(cls, operation: str, body: Fields, caller_id: int) -> UserOperation:
        user_id = body.int("id", minimum=1, maximum=MAX_USER_ID)
        if user_id == caller_id:
            raise Unprocessable("id: must be another user's id, not your own")
        note = body.str("description", required=operation == UPDATE, max_len=MAX_NOTE_LENGTH)
        return cls(operation=operation, user_id=user_id, note=note)


@dataclass(frozen=True, slots=True)
class ListOperation:
    """``getFriend``, ``getIncoming``, ``getOutcoming``, ``listBlocks``: one page."""

    operation: str
    take: int
    skip: int

    @classmethod
    def parse(cls, operation: str, body: Fields) -> ListOperation:
        take = body.int("take", required=False, default=DEFAULT_TAKE, minimum=1, maximum=MAX_TAKE)
        skip = body.int("skip", required=False, default=0, minimum=0, maximum=MAX_SKIP)
        return cls(operation=operation, take=take, skip=skip)
