"""Profiles: ``Email`` (send or confirm a code), ``GetUser``, ``ChangeUser``."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from ..fields import Fields
from ..status import BadRequest, Unprocessable
from .accounts import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, check_email, check_login, check_password

MAX_NICKNAME_LENGTH = 64
MAX_MEDIA_KEY_LENGTH = 128
MAX_EMAIL_LENGTH = 320
MAX_USER_ID = 2**63 - 1
#: Longer than any login (3 to 32 characters), so the format check names the problem.
MAX_LOGIN_FIELD = 64
CODE_RE = re.compile(r"^[0-9]{6}$")
#: Extensions a profile photo may have (a ``Media`` upload of another type is refused).
IMAGE_EXTENSIONS = frozenset({"png", "jpg", "jpeg", "gif", "webp", "bmp"})


def check_code(code: str, field: str = "code") -> str:
    code = code.strip()
    if not CODE_RE.match(code):
        raise Unprocessable(f"{field}: 6 digits expected")
    return code


def check_nickname(nickname: str, field: str = "nickname") -> str:
    """Trimmed, 1 to 64 characters, no control characters (a nickname is shown
    on one line beside messages)."""
    nickname = nickname.strip()
    if not nickname:
        raise Unprocessable(f"{field}: must not be empty")
    if len(nickname) > MAX_NICKNAME_LENGTH:
        raise Unprocessable(f"{field}: longer than {MAX_NICKNAME_LENGTH} characters")
    if any(unicodedata.category(ch) == "Cc" for ch in nickname):
        raise Unprocessable(f"{field}: must not contain control characters")
    return nickname


def _code_text(body: Fields) -> str | None:
    """``code`` as text.  A JSON client may send it as a number, which loses
    leading zeros (``012345`` arrives as 12345): they are put back."""
    raw = body.raw("code")
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw < 10**6:
        return f"{raw:06d}"
    return body.str("code", required=False, max_len=32)


@dataclass(frozen=True, slots=True)
class Email:
    """``Email``: ``email`` set asks for a code to that address; only ``code``
    confirms.  Both set: only the send happens (the original says so)."""

    email: str | None
    code: str | None

    @classmethod
    def parse(cls, body: Fields) -> Email:
        if body.has("email"):
            email = body.str("email", max_len=MAX_EMAIL_LENGTH)
            return cls(email=check_email(email, "email"), code=None)
        code = _code_text(body)
        if not code:
            raise BadRequest("email or code is required")
        return cls(email=None, code=check_code(code))

    @property
    def sends(self) -> bool:
        return self.email is not None


@dataclass(frozen=True, slots=True)
class GetUser:
    """``id`` (the original's field), or ``login`` (beyond the original: how
    people name each other), exactly one of them."""

    id: int | None
    login: str | None = None

    @classmethod
    def parse(cls, body: Fields) -> GetUser:
        login = body.str("login", required=False, max_len=MAX_LOGIN_FIELD)
        if login is None:
            return cls(id=body.int("id", minimum=1, maximum=MAX_USER_ID))
        if body.has("id"):
            raise BadRequest("id and login: send one of them")
        return cls(id=None, login=check_login(login.strip(), "login"))


@dataclass(frozen=True, slots=True)
class ChangeUser:
    """``ChangeUser``: every filled field is one change; unfilled (absent, null
    or "") fields are left alone.  ``oldPass`` and ``newPass`` go together."""

    nickname: str | None
    old_password: str | None
    new_password: str | None
    image_key: str | None
    email: str | None

    @classmethod
    def parse(cls, body: Fields, min_password_length: int = MIN_PASSWORD_LENGTH) -> ChangeUser:
        if not any(body.has(name) for name in ("nickname", "oldPass", "newPass", "imagekey", "email")):
            raise BadRequest("nothing to change")
        nickname = body.str("nickname", required=False, max_len=1024)
        old_password = body.str("oldPass", required=False, max_len=MAX_PASSWORD_LENGTH)
        new_password = body.str("newPass", required=False, max_len=MAX_PASSWORD_LENGTH)
        image_key = body.str("imagekey", required=False, max_len=MAX_MEDIA_KEY_LENGTH, strip=True)
        email = body.str("email", required=False, max_len=MAX_EMAIL_LENGTH)
        if (old_password is None) != (new_password is None):
            raise BadRequest("oldPass and newPass must be sent together")
        if new_password is not None:
            check_password(new_password, "newPass", min_password_length)
            if new_password == old_password:
                raise Unprocessable("newPass: must differ from oldPass")
        return cls(
            nickname=check_nickname(nickname) if nickname is not None else None,
            old_password=old_password,
            new_password=new_password,
            image_key=image_key or None,
            email=check_email(email, "email") if email is not None else None,
        )

    @property
    def changes_password(self) -> bool:
        return self.new_password is not None
