"""Push and catch-up requests (beyond the original API).

``Subscribe``: push this session's events on this connection, starting after
``after`` (the last seq the client has seen; omitted = only new events).
``Unsubscribe``: stop.  ``GetEvents``: pull a page of the log instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..fields import Fields

SUBSCRIBE = "Subscribe"
UNSUBSCRIBE = "Unsubscribe"
GET_EVENTS = "GetEvents"
MAX_EVENTS_PAGE = 1000


@dataclass(frozen=True, slots=True)
class Subscribe:
    after: int | None

    @classmethod
    def parse(cls, body: Fields) -> Subscribe:
        return cls(after=body.int("after", required=False, minimum=0))


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
