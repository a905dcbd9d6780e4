"""Device sessions and password reset (beyond the original API).

``GetSessions``: my live sessions, one per device login.
``RevokeSession``: log out one of them (``id``) or every one but this (``all``).
``ResetPassword``: ``email`` alone mails a reset code to that address;
``email`` + ``code`` + ``newPass`` sets the new password.  No session needed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..fields import Fields
from ..session import Sessia, parse_sessia
from ..status import BadRequest
from .accounts import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, check_email, check_password
from .dialogs import Page
from .profiles import MAX_EMAIL_LENGTH, check_code
from .profiles import _code_text as code_text

GET_SESSIONS = "GetSessions"
REVOKE_SESSION = "RevokeSession"
RESET_PASSWORD = "ResetPassword"

MAX_SESSION_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class GetSessions:
    """``take`` (1-100, default 50) and ``skip`` page the list, most recently seen first."""

    take: int
    skip: int

    @classmethod
    def parse(cls, body: Fields) -> GetSessions:
        page = Page.parse(body, with_date=False)
        return cls(take=page.take, skip=page.skip)


@dataclass(frozen=True, slots=True)
class RevokeSession:
    """Exactly one of ``id`` (a session of mine) and ``all: true`` (every
    session of mine but the one making the request)."""

    id: int | None
    all: bool

    @classmethod
    def parse(cls, body: Fields) -> RevokeSession:
        everything = body.bool("all", required=False, default=False)
        session_id = body.int("id", required=False, minimum=1, maximum=MAX_SESSION_ID)
        if everything and session_id is not None:
            raise BadRequest("id and all: send one of them")
        if not everything and session_id is None:
            raise BadRequest("id or all is required")
        return cls(id=session_id, all=bool(everything))


@dataclass(frozen=True, slots=True)
class ResetPassword:
    """``email`` alone asks for a code; with ``code`` and ``newPass`` it sets
    the password.  ``sessia`` carries the device and the client build, as for
    ``Auth`` by password (no token)."""

    email: str
    code: str | None
    new_password: str | None
    sessia: Sessia

    @classmethod
    def parse(cls, body: Fields, min_password_length: int = MIN_PASSWORD_LENGTH) -> ResetPassword:
        email = check_email(body.str("email", max_len=MAX_EMAIL_LENGTH), "email")
        code = code_text(body)
        new_password = body.str("newPass", required=False, max_len=MAX_PASSWORD_LENGTH)
        sessia = parse_sessia(body, need_token=False)
        if code is None and new_password is None:
            return cls(email=email, code=None, new_password=None, sessia=sessia)
        if code is None:
            raise BadRequest("code is required with newPass")
        if new_password is None:
            raise BadRequest("newPass is required with code")
        check_password(new_password, "newPass", min_password_length)
        return cls(email=email, code=check_code(code), new_password=new_password, sessia=sessia)

    @property
    def sends(self) -> bool:
        return self.code is None
