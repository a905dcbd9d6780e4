"""SDK exceptions.

Every non-200 answer raises the ``protocol.status`` class for its code
(``NotFound``, ``Unauthorized``...), all subclasses of ``SessiaError``, so
``except SessiaError`` catches every refusal from the server.  Transport
problems have their own classes under ``ClientError``.
"""

from __future__ import annotations

import asyncio

from protocol.status import (
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    InternalError,
    NotFound,
    RangeNotSatisfiable,
    SessiaError,
    TooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    Unprocessable,
    error_for,
)

__all__ = [
    "BadRequest",
    "ClientError",
    "Conflict",
    "ConnectionClosed",
    "Forbidden",
    "Gone",
    "InternalError",
    "NotFound",
    "NotLoggedIn",
    "ProtocolError",
    "RangeNotSatisfiable",
    "RequestTimeout",
    "SessiaError",
    "TooLarge",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "Unprocessable",
    "error_for",
]


class ClientError(Exception):
    """A problem on the client side or on the transport, not a server answer."""


class ConnectionClosed(ClientError, ConnectionError):
    """The connection closed before the answer arrived."""


class RequestTimeout(ClientError, asyncio.TimeoutError):
    """No answer within the timeout.  The request may still have been executed."""


class ProtocolError(ClientError):
    """The server answered with a protocol error frame (malformed frame)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class NotLoggedIn(ClientError):
    """A method that needs a session was called before register/login."""
