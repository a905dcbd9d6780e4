"""Status codes and the errors that carry them.

Every answer on the wire carries ``{"Status": {"code": int, "message": str}}``.
The codes keep their HTTP meaning so that clients written against the original
API (which spoke HTTP) read them the same way.

There is one exception class per code.  The server raises them from handlers and
the decoder; the client SDK raises the same classes when an answer is not 200, so
a caller catches ``NotFound`` whichever side produced it.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class Status(IntEnum):
    OK = 200
    BAD_REQUEST = 400
    UNAUTHORIZED = 401
    FORBIDDEN = 403
    NOT_FOUND = 404
    CONFLICT = 409
    GONE = 410
    TOO_LARGE = 413
    RANGE_NOT_SATISFIABLE = 416
    UNPROCESSABLE = 422
    TOO_MANY_REQUESTS = 429
    INTERNAL = 500
    UNAVAILABLE = 503


DEFAULT_MESSAGES: dict[int, str] = {
    Status.OK: "Operation done",
    Status.BAD_REQUEST: "Malformed request",
    Status.UNAUTHORIZED: "Not logged in",
    Status.FORBIDDEN: "Not allowed",
    Status.NOT_FOUND: "Not found",
    Status.CONFLICT: "Conflict",
    Status.GONE: "Gone",
    Status.TOO_LARGE: "Too large",
    Status.RANGE_NOT_SATISFIABLE: "Range not satisfiable",
    Status.UNPROCESSABLE: "Invalid value",
    Status.TOO_MANY_REQUESTS: "Too many requests",
    Status.INTERNAL: "Internal error",
    Status.UNAVAILABLE: "Service unavailable",
}


class SessiaError(Exception):
    """Base of every error that maps to a Status code.

    ``extra`` holds fields sent beside ``Status`` in the answer (for example
    ``RetryAfter`` on 429), so the error alone is enough to build the response.
    """

    code: int = Status.INTERNAL

    def __init__(self, message: str | None = None, *, code: int | None = None, **extra: Any):
        if code is not None:
            self.code = code
        self.message = message or DEFAULT_MESSAGES.get(self.code, "Error")
        self.extra = extra
        super().__init__(self.message)

    def status(self) -> dict[str, Any]:
        return {"code": int(self.code), "message": self.message}

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"Status": self.status()}
        body.update(self.extra)
        return body

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}, {self.message!r})"


class BadRequest(SessiaError):
    code = Status.BAD_REQUEST


class Unauthorized(SessiaError):
    code = Status.UNAUTHORIZED


class Forbidden(SessiaError):
    code = Status.FORBIDDEN


class NotFound(SessiaError):
    code = Status.NOT_FOUND


class Conflict(SessiaError):
    code = Status.CONFLICT


class Gone(SessiaError):
    code = Status.GONE


class TooLarge(SessiaError):
    code = Status.TOO_LARGE


class RangeNotSatisfiable(SessiaError):
    """A byte range that starts past the end of the file (``GetMedia``)."""

    code = Status.RANGE_NOT_SATISFIABLE


class Unprocessable(SessiaError):
    code = Status.UNPROCESSABLE


class TooManyRequests(SessiaError):
    code = Status.TOO_MANY_REQUESTS


class InternalError(SessiaError):
    code = Status.INTERNAL


class Unavailable(SessiaError):
    code = Status.UNAVAILABLE


ERROR_CLASSES: dict[int, type[SessiaError]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        Gone,
        TooLarge,
        RangeNotSatisfiable,
        Unprocessable,
        TooManyRequests,
        InternalError,
        Unavailable,
    )
}


def error_for(code: int, message: str, **extra: Any) -> SessiaError:
    """The exception class for a Status code received from a peer."""
    cls = ERROR_CLASSES.get(code, SessiaError)
    return cls(message, code=code, **extra)


def ok(message: str = "Operation done", **fields: Any) -> dict[str, Any]:
    """A 200 answer body with the request's own fields beside ``Status``."""
    body: dict[str, Any] = {"Status": {"code": 200, "message": message}}
    body.update(fields)
    return body
