"""Push and catch-up requests (beyond the original API).

``Subscribe``: push this session's events on this connection, starting after
``after`` (the last seq the client has seen; omitted = only new events).
``Unsubscribe``: stop.  ``GetEvents``: pull a page of the log instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..fields import Fields
from ..status import BadRequest, Unprocessable

SUBSCRIBE = "Subscribe"
UNSUBSCRIBE = "Unsubscribe"
GET_EVENTS = "GetEvents"
GET_DIALOG_EVENTS = "GetDialogEvents"
MAX_EVENTS_PAGE = 1000
#: Large dialogs a Subscribe may name positions for (a user in more gets the
#: rest from their newest events).
MAX_FOLLOWED = 1000
MAX_KEY_LENGTH = 128


@dataclass(frozen=True, slots=True)
class Subscribe:
    """``after``: the user's own stream; ``dialogs``: for large dialogs, the
    last ``Pts`` the client has of each (``[{"pkDialog": key, "after": pts}]``)."""

    after: int | None
    dialogs: dict[str, int]

    @classmethod
    def parse(cls, body: Fields) -> Subscribe:
        positions: dict[str, int] = {}
        listed = body.list("dialogs", required=False) or []
        if len(listed) > MAX_FOLLOWED:
            raise Unprocessable(f"dialogs: at most {MAX_FOLLOWED}")
        for i, item in enumerate(listed):
            if not isinstance(item, dict):
                raise BadRequest(f"dialogs[{i}]: must be a map")
            entry = Fields(item, f"dialogs[{i}]")
            positions[entry.str("pkDialog", max_len=MAX_KEY_LENGTH)] = entry.int("after", minimum=0)
        return cls(after=body.int("after", required=False, minimum=0), dialogs=positions)


@dataclass(frozen=True, slots=True)
class GetDialogEvents:
    """A page of a large dialog's own log, after ``after`` (a ``Pts``)."""

    dialog: str
    after: int
    take: int

    @classmethod
    def parse(cls, body: Fields) -> GetDialogEvents:
        return cls(
            dialog=body.str("pkDialog", max_len=MAX_KEY_LENGTH),
            after=body.int("after", minimum=0),
            take=body.int("take", required=False, minimum=1, maximum=MAX_EVENTS_PAGE, default=100),
        )


@dataclass(frozen=True, slots=True)
class GetEvents:
    after: int
    take: int

    @classmethod
    def parse(cls, body: Fields) -> GetEvents:
        return cls(
            after=body.int("after", minimum=0),
            take=body.int("take", required=False, minimum=1, maximum=MAX_EVENTS_PAGE, default=100),
        )
