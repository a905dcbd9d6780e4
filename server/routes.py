"""Routes: request name -> handler, and what a handler is given.

A handler is ``async def handler(call: Call) -> dict`` (or, for an answer
that carries a large bytes field, a ``PreparedResponse`` built around it) and
reads like the API description: validate, authorize, change through storage, answer.  Handlers
register here with ``@route``; server/dispatch.py imports them all and runs
them, so a handler never imports the dispatcher.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from protocol.fields import Fields
from protocol.frames import PreparedResponse
from protocol.session import Sessia

if TYPE_CHECKING:
    from .app import App
    from .connection import Connection
    from .sessions import Session

Handler = Callable[["Call"], Awaitable[dict[str, Any] | PreparedResponse]]


@dataclass(slots=True)
class Call:
    """Everything a handler may look at for one request."""

    app: App
    name: str
    body: Fields
    session: Session | None
    sessia: Sessia | None
    conn: Connection
    codec: int

    @property
    def peer(self) -> str:
        return self.conn.peer

    @property
    def user_id(self) -> int:
        assert self.session is not None, "handler registered without session=True"
        return self.session.user_id


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    handler: Handler
    session: bool


ROUTES: dict[str, Route] = {}


def route(name: str, *, session: bool = True) -> Callable[[Handler], Handler]:
    """Register a handler.  ``session=True``: the dispatcher checks ``sessia``
    before the handler runs and hands it the Session."""

    def register(handler: Handler) -> Handler:
        if name in ROUTES:
            raise RuntimeError(f"two handlers for {name}")
        ROUTES[name] = Route(name, handler, session)
        return handler

    return register
