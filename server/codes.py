"""Codes sent by email: one flow for confirming an address (``Email``,
``ChangeUser``) and for resetting a password (``ResetPassword``).

Sending: ``mail_code`` reserves a code row in a transaction that also runs
the caller's checks (under the account's row lock, so two requests of one
account take turns), mails the code after that commit, and discards the row
if the mail cannot be sent (the client may retry at once; a code sent earlier
stays valid).  A reserved code is not usable until the caller marks it sent
(``email_codes.mark_sent``) in the transaction that applies its request, so a
request refused after the mail went leaves no usable code (``discard_code``).

Checking: ``verify_code`` reads the pending code under its row lock, counts a
wrong guess (committed even though the request is refused) and consumes a
right one, so the attempts limit holds against guesses that race.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from storage import email_codes, users
from storage.db import Database

if TYPE_CHECKING:
    from .app import App


#: What a code is for (``email_codes.purpose``).
CONFIRM = "confirm"
RESET = "reset"


async def mail_code(
    app: App,
    name: str,
    *,
    user_id: int,
    email: str,
    purpose: str,
    subject: str,
    text: Callable[[str], str],
    checks: Callable[[Database, users.User | None], Awaitable[bool]],
) -> int | None:
    """Reserve a code for ``email`` and mail it; the code's id, or None when
    ``checks`` says not to send.  ``checks`` runs in the reserving
    transaction with the account's row as locked there (None: the account is
    gone), so what it checks holds against a concurrent request; it may also
    raise a refusal."""
    code = email_codes.new_code()
    ttl = app.config.email_code_ttl
    async with app.changes(f"{name}.reserve") as ch:
        locked = await users.lock_for_update(ch.db, user_id)  # one request at a time per account
        if not await checks(ch.db, locked):
            return None
        code_id = await email_codes.reserve(ch.db, user_id=user_id, email=email, code=code, ttl=ttl, purpose=purpose)
    try:
        await app.mailer.send(email, subject, text(code))
    except BaseException:
        await discard_code(app, code_id)
        raise
    return code_id


async def discard_code(app: App, code_id: int) -> None:
    """Drop a reserved code that must not become usable."""
    async with app.changes("email_codes.discard") as ch:
        await email_codes.discard(ch.db, code_id)


class Outcome(enum.Enum):
    RIGHT = "right"
    NONE = "none"  # no code pending (or none for this address)
    EXPIRED = "expired"
    EXHAUSTED = "exhausted"  # no attempts left
    WRONG = "wrong"


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    pending: email_codes.PendingCode | None = None
    attempts_left: int = 0


async def verify_code(
    db: Database, user_id: int, purpose: str, code: str, *, max_attempts: int, for_email: str | None = None
) -> Verdict:
    """Check ``code`` against the account's pending code of ``purpose``, inside
    the caller's transaction: a wrong guess is counted, a right code consumed
    (the caller applies what it unlocks in the same transaction).
    ``for_email``: the code counts only if it was sent to this address (by
    identity key)."""
    pending = await email_codes.pending_for_update(db, user_id, purpose)
    if pending is None or (
        for_email is not None and users.identity_key(pending.email) != users.identity_key(for_email)
    ):
        return Verdict(Outcome.NONE)
    if pending.expired:
        return Verdict(Outcome.EXPIRED, pending)
    if pending.attempts >= max_attempts:
        return Verdict(Outcome.EXHAUSTED, pending)
    if not pending.matches(code):
        attempts = await email_codes.record_failure(db, pending.id)
        return Verdict(Outcome.WRONG, pending, max_attempts - attempts)
    await email_codes.consume(db, pending.id)
    return Verdict(Outcome.RIGHT, pending)
