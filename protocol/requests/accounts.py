"""Accounts: ``Registration``, ``Auth`` (by password or by token), ``disable``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..fields import Fields
from ..session import Sessia, parse_sessia
from ..status import Unprocessable

LOGIN_RE = re.compile(r"^[A-Za-z0-9_.\-]{3,32}$")
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 256


def check_login(login: str, field: str = "login.login") -> str:
    if not LOGIN_RE.match(login):
        raise Unprocessable(f"{field}: 3 to 32 letters, digits, '_', '.' or '-'")
    return login


def check_email(email: str, field: str = "email.email") -> str:
    email = email.strip()
    if len(email) > 254 or not EMAIL_RE.match(email):
        raise Unprocessable(f"{field}: not a valid email address")
    return email


def check_password(password: str, field: str, min_length: int = MIN_PASSWORD_LENGTH) -> str:
    if len(password) < min_length:
        raise Unprocessable(f"{field}: shorter than {min_length} characters")
    return password


@dataclass(frozen=True, slots=True)
class Registration:
    login: str
    password: str
    email: str
    sessia: Sessia

    @classmethod
    def parse(cls, body: Fields, min_password_length: int = MIN_PASSWORD_LENGTH) -> Registration:
        login = body.map("login").str("login", max_len=64)
        password = body.map("password").str("password", max_len=MAX_PASSWORD_LENGTH)
        email = body.map("email").str("email", max_len=320)
        sessia = parse_sessia(body, need_token=False)
        return cls(
            login=check_login(login),
            password=check_password(password, "password.password", min_password_length),
            email=check_email(email),
            sessia=sessia,
        )


@dataclass(frozen=True, slots=True)
class PasswordAuth:
    """``Auth`` by password.  ``email`` may also hold the login: the original's
    heading says "by login and password" while its body names the field email."""

    email: str
    password: str
    sessia: Sessia

    @classmethod
    def parse(cls, body: Fields) -> PasswordAuth:
        return cls(
            email=body.str("email", min_len=1, max_len=320, strip=True),
            password=body.str("password", min_len=1, max_len=MAX_PASSWORD_LENGTH),
            sessia=parse_sessia(body, need_token=False),
        )


def is_password_auth(body: Fields) -> bool:
    """``Auth`` with a password is a login; without one it checks the token."""
    return body.raw("password") is not None
