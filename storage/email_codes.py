"""Email confirmation codes.

A code is six random digits.  It is never stored: only an HMAC-SHA256 of it,
bound to the code's row id and to the address it confirms, so a row cannot be
reused for another address and equal codes never hash alike.  Six digits are
few, so the hash only keeps codes out of casual sight (backups, a look at the
table); what protects them is the short lifetime and the attempt limit.

Life of a code (``purpose = 'confirm'``; password reset codes, ``purpose =
'reset'``, live the same way, each purpose on its own: the functions take
``purpose``, default ``'confirm'``):

- ``reserve``: a row is written before the mail goes out, so a concurrent
  request sees it and the resend interval holds; it is not usable yet.
- ``mark_sent``: the mail was delivered; the code becomes the user's pending
  code and every older pending code of the user is deleted (a new code
  replaces the old one).
- ``discard``: the mail could not be sent; the row goes, so the failure
  neither blocks a retry nor replaces the code the user already has.
- ``record_failure`` counts wrong guesses; ``consume`` ends a confirmed code.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from .db import Database

CODE_DIGITS = 6
_HASH_KEY = b"sessia email confirmation code v1"


def new_code() -> str:
    """Six digits from the system's CSPRNG, leading zeros kept."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def hash_code(code_id: int, email: str, code: str) -> bytes:
    message = f"{code_id}\x00{email.lower()}\x00{code}".encode()
    return hmac.new(_HASH_KEY, message, hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class PendingCode:
    """The user's current code, as the confirmation step needs it."""

    id: int
    email: str
    code_hash: bytes
    attempts: int
    expired: bool

    def matches(self, code: str) -> bool:
        """Constant-time comparison, so timing reveals nothing about the code."""
        return hmac.compare_digest(self.code_hash, hash_code(self.id, self.email, code))


async def seconds_until_resend(
    db: Database, user_id: int, interval: float, *, purpose: str = "confirm"
) -> int:
    """Whole seconds before the user may be sent another code (0: now).

    Counted from the newest code that is still open (sent or being sent);
    a confirmed code does not hold back the next one, a failed send left no row."""
    sql = (
        "SELECT ceil(extract(epoch FROM max(created_at) + make_interval(secs => $2::float8) - now()))::int"
        " FROM email_codes WHERE user_id = $1 AND purpose = $3 AND consumed_at IS NULL"
        " AND created_at > now() - make_interval(secs => $2::float8)"
    )
    wait = await db.fetchval("email_codes.seconds_until_resend", sql, user_id, interval, purpose)
    return max(0, wait or 0)


async def reserve(
    db: Database, *, user_id: int, email: str, code: str, ttl: float, purpose: str = "confirm"
) -> int:
    """Store a code for ``email`` that is not usable until ``mark_sent``; returns its id.

    The id is drawn first because the hash covers it."""
    code_id = await db.fetchval("email_codes.reserve", "SELECT nextval(pg_get_serial_sequence('email_codes', 'id'))")
    await db.execute(
        "email_codes.reserve",
        "INSERT INTO email_codes (id, user_id, purpose, email, code_hash, expires_at)"
        " VALUES ($1, $2, $6, $3, $4, now() + make_interval(secs => $5::float8))",
        code_id,
        user_id,
        email,
        hash_code(code_id, email, code),
        ttl,
        purpose,
    )
    return code_id


async def mark_sent(
    db: Database, *, code_id: int, user_id: int, ttl: float, purpose: str = "confirm"
) -> None:
    """The mail went out: the code becomes the pending one (its lifetime starts
    now) and replaces every older open code of the user."""
    await db.execute(
        "email_codes.mark_sent",
        "UPDATE email_codes SET sent_at = now(), expires_at = now() + make_interval(secs => $2::float8)"
        " WHERE id = $1",
        code_id,
        ttl,
    )
    await db.execute(
        "email_codes.mark_sent",
        "DELETE FROM email_codes WHERE user_id = $1 AND purpose = $3 AND consumed_at IS NULL AND id < $2",
        user_id,
        code_id,
        purpose,
    )


async def discard(db: Database, code_id: int) -> None:
    """Forget a code whose mail was not sent."""
    await db.execute("email_codes.discard", "DELETE FROM email_codes WHERE id = $1 AND sent_at IS NULL", code_id)


async def pending_for_update(db: Database, user_id: int, purpose: str = "confirm") -> PendingCode | None:
    """The user's newest sent, unconfirmed code, locked until the transaction ends
    (two guesses at once are counted one after the other)."""
    row = await db.fetchrow(
        "email_codes.pending_for_update",
        "SELECT id, email, code_hash, attempts, expires_at <= now() AS expired FROM email_codes"
        " WHERE user_id = $1 AND purpose = $2 AND sent_at IS NOT NULL AND consumed_at IS NULL"
        " ORDER BY id DESC LIMIT 1 FOR UPDATE",
        user_id,
        purpose,
    )
    return PendingCode(**dict(row)) if row is not None else None


async def record_failure(db: Database, code_id: int) -> int:
    """Count one wrong guess; returns the attempts made so far."""
    return await db.fetchval("email_codes.record_failure", "UPDATE email_codes SET attempts = attempts + 1 WHERE id = $1 RETURNING attempts", code_id)


async def consume(db: Database, code_id: int) -> None:
    await db.execute("email_codes.consume", "UPDATE email_codes SET consumed_at = now() WHERE id = $1", code_id)
