"""What the API mixins use of the client, declared once.

Every mixin in ``client_sdk.api`` inherits ``ClientBase``; ``client_sdk.Client``
inherits the mixins and implements what is abstract here.  So each mixin is
type-checked against the same declarations, and a ``Client`` missing one of
them cannot be instantiated.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime
from typing import Any

from protocol.codecs import Codec

from ..errors import NotLoggedIn


class ClientBase(ABC):
    """The client's state and its one request path, as the mixins see them."""

    #: the codec of every request (``Codec.MSGPACK`` or ``Codec.JSON``)
    codec: Codec
    #: the logged-in user's id; None before register/login and after logout
    user_id: int | None
    #: unfinished uploads this client started: (path, size, mtime) -> upload id
    _uploads: dict[tuple[str, int, int], str]

    @abstractmethod
    async def request(self, name: str, body: dict[str, Any], *, needs_session: bool = True) -> dict[str, Any]:
        """Send a request and return the answer; raise the typed error if not 200."""

    @abstractmethod
    def _login_sessia(self) -> dict[str, Any]:
        """The ``sessia`` object of a request that opens a session (device and client in full)."""

    def _me(self) -> int:
        """The logged-in user's id; ``NotLoggedIn`` without a session."""
        if self.user_id is None:
            raise NotLoggedIn("register or log in first")
        return self.user_id


def date_arg(date: str | datetime) -> str:
    """``"-1"`` (the newest page) or a datetime for "since then"."""
    if isinstance(date, datetime):
        return date.isoformat()
    return date
