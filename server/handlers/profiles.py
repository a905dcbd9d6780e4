"""Email (send / confirm a code), GetUser and ChangeUser.

An address becomes the account's email only when a code mailed to it comes
back: ``Email`` with ``email`` and ``ChangeUser`` with ``email`` both go through
``send_code``, ``Email`` with ``code`` through ``confirm_code``.  The policy
(lifetime, attempts, resend interval) is in docs/api/profiles.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from protocol.answers import UserItem
from protocol.requests import CHANGE_USER, EMAIL, GET_USER
from protocol.requests.profiles import IMAGE_EXTENSIONS, ChangeUser, Email, GetUser
from protocol.status import (
    Conflict,
    Forbidden,
    Gone,
    NotFound,
    SessiaError,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
    ok,
)
from storage import email_codes, media, users
from storage.errors import StorageError

from .. import accounts
from ..codes import CONFIRM, Outcome, Verdict, discard_code, mail_code, verify_code
from ..mail import code_lifetime
from ..routes import Call, route
from ..sessions import Session

if TYPE_CHECKING:
    from storage.db import Database

NICKNAME_CHANGED = "nickname changed"
PASSWORD_CHANGED = "password changed"
PHOTO_CHANGED = "profile photo changed"
CODE_SENT_TO_NEW_EMAIL = "confirmation code sent to the new email"

MAIL_SUBJECT = "Your sessia confirmation code"


@route(EMAIL)
async def email(call: Call) -> dict[str, Any]:
    await call.app.limits.email_ip.check(call.conn.ip)
    await call.app.limits.email_account.check(call.user_id)
    req = Email.parse(call.body)
    if req.email is not None:
        code_id = await send_code(call, await current_user(call), req.email)
        async with call.app.changes("email.sent") as ch:
            await email_codes.mark_sent(ch.db, code_id=code_id, user_id=call.user_id,
                                        ttl=call.app.config.email_code_ttl)
        return ok("code sent to the email")
    assert req.code is not None  # parse requires one of the two
    await confirm_code(call, req.code)
    return ok("email confirmed")


@route(GET_USER)
async def get_user(call: Call) -> dict[str, Any]:
    req = GetUser.parse(call.body)
    if req.login is not None:
        # A lookup by name can probe which logins exist: it spends the
        # account's search budget (--rate-search), as Search does.
        await call.app.limits.search.check(call.user_id)
        user = await users.find_by_login(call.app.db, req.login)
    else:
        assert req.id is not None  # parse requires one of the two
        user = await users.get_user(call.app.db, req.id)
    if user is None:
        raise NotFound("no such user")
    return ok("user profile", **UserItem(id=user.id, nickname=user.nickname, photo=user.photo_key).to_wire())


@route(CHANGE_USER)
async def change_user(call: Call) -> dict[str, Any]:
    """Check every filled field first, then apply them all in one transaction:
    a refusal of any one leaves the profile exactly as it was."""
    req = ChangeUser.parse(call.body, call.app.config.min_password_length)
    session = call.session
    assert session is not None
    await count_attempts(call, req)
    me = await current_user(call)
    if req.image_key is not None:
        await check_photo(call, req.image_key)
    if req.email is not None:
        check_address(me, req.email, await users.email_owner(call.app.db, req.email))
        await check_resend_interval(call)
    new_hash = await new_password_hash(call, me, req) if req.changes_password else None
    code_id = await send_code(call, me, req.email) if req.email is not None else None
    try:
        await apply_change(call, session, me, req, new_hash, code_id)
    except (SessiaError, StorageError):
        if code_id is not None:  # refused after the mail went: its code must not become usable
            await discard_code(call.app, code_id)
        raise
    return ok("profile updated", Messages=change_messages(req))


async def apply_change(
    call: Call, session: Session, me: users.User, req: ChangeUser, new_hash: str | None, code_id: int | None
) -> None:
    """ChangeUser's one transaction, which decides again against rows that
    cannot change until it commits."""
    async with call.app.changes("change_user") as ch:
        # Decided again against rows that cannot change until this commits:
        # the session must still be live, and a password change needs the
        # password it checked to still be the account's (two changes with
        # the same old password: the second is refused, not applied).
        locked = await accounts.lock_account(ch.db, session)
        if new_hash is not None and locked.password_hash != me.password_hash:
            raise Forbidden("old password is wrong")
        if code_id is not None:
            await email_codes.mark_sent(ch.db, code_id=code_id, user_id=me.id, ttl=call.app.config.email_code_ttl)
        if req.nickname is not None or req.image_key is not None:
            await users.update_profile(ch.db, me.id, nickname=req.nickname, photo_key=req.image_key)
        if new_hash is not None:
            _, revoked = await accounts.replace_password(ch.db, me.id, new_hash, keep=session.id)
            ch.after_commit(lambda: call.app.sessions_ended(revoked, call.conn))


async def count_attempts(call: Call, req: ChangeUser) -> None:
    """Spend the rate limits of what the request tries, right or wrong, before
    any lookup or hash: ``oldPass`` from the account's password attempts (the
    budget ``Auth`` spends, so a stolen session cannot guess the password
    faster than a login can, nor keep the hashing threads busy), ``email``
    from its email requests (the budget ``Email`` spends, so the 409 for a
    registered address cannot test addresses faster than ``Email`` can)."""
    if req.changes_password:
        await call.app.limits.password_account.check(call.user_id)
    if req.email is not None:
        await call.app.limits.email_ip.check(call.conn.ip)
        await call.app.limits.email_account.check(call.user_id)


def change_messages(req: ChangeUser) -> list[str]:
    """What changed, in the original's order."""
    messages = []
    if req.nickname is not None:
        messages.append(NICKNAME_CHANGED)
    if req.changes_password:
        messages.append(PASSWORD_CHANGED)
    if req.image_key is not None:
        messages.append(PHOTO_CHANGED)
    if req.email is not None:
        messages.append(CODE_SENT_TO_NEW_EMAIL)
    return messages


async def current_user(call: Call) -> users.User:
    user = await users.get_user(call.app.db, call.user_id)
    if user is None:  # deleted while a session was cached
        raise Unauthorized("account no longer exists")
    return user


async def check_photo(call: Call, key: str) -> None:
    """A profile photo is an image the caller uploaded.  A key the caller
    may not download is answered as one that does not exist (as GetMedia
    does): a photo field is no way to learn which keys exist."""
    row = await media.visible_to(call.app.db, key, call.user_id)
    if row is None:
        raise NotFound("no such media")
    if row.owner_id != call.user_id:
        raise Forbidden("imagekey: a profile photo must be your own upload")
    if row.extension.lower() not in IMAGE_EXTENSIONS:
        raise Unprocessable(f"imagekey: not an image ({', '.join(sorted(IMAGE_EXTENSIONS))})")


async def new_password_hash(call: Call, me: users.User, req: ChangeUser) -> str:
    old, new = req.old_password, req.new_password
    assert old is not None and new is not None  # ``changes_password``: parse required both
    if not await call.app.passwords.verify(me.password_hash, old):
        raise Forbidden("old password is wrong")
    return await call.app.passwords.hash(new)


# -- email codes ------------------------------------------------------------------------


def check_address(me: users.User, email: str, owner: int | None) -> None:
    """An address another account uses cannot be confirmed here; the account's
    own address needs no second confirmation."""
    if owner is not None and owner != me.id:
        raise Conflict("email is already registered")
    if owner == me.id and me.email_confirmed:
        raise Conflict("email is already confirmed")


async def check_resend_interval(call: Call, tx: Database | None = None) -> None:
    """429 with ``RetryAfter`` (seconds) while the last code is too recent."""
    wait = await email_codes.seconds_until_resend(
        tx or call.app.db, call.user_id, call.app.config.email_code_resend_interval
    )
    if wait > 0:
        raise TooManyRequests(f"a code was sent recently, try again in {wait} s", RetryAfter=wait)


async def send_code(call: Call, me: users.User, email: str) -> int:
    """Store a new code for ``email`` and mail it (server/codes.py); returns
    the code's id.  It becomes usable once the caller marks it sent
    (``email_codes.mark_sent``) in the transaction that applies the request."""

    async def checks(db: Database, locked: users.User | None) -> bool:
        check_address(locked or me, email, await users.email_owner(db, email))
        await check_resend_interval(call, db)
        return True

    ttl = call.app.config.email_code_ttl
    code_id = await mail_code(call.app, "email", user_id=me.id, email=email, purpose=CONFIRM, subject=MAIL_SUBJECT,
                              text=lambda code: mail_text(code, ttl), checks=checks)
    assert code_id is not None  # ``checks`` refuses by raising
    return code_id


def mail_text(code: str, ttl: float) -> str:
    """The code alone on its line, and no other six-digit number anywhere."""
    lifetime = code_lifetime(ttl)
    return (
        "Your confirmation code:\n"
        "\n"
        f"{code}\n"
        "\n"
        f"Enter it in the app to confirm this email address. It is valid for {lifetime}.\n"
        "If you did not ask for it, ignore this message: the address stays unconfirmed.\n"
    )


async def confirm_code(call: Call, code: str) -> None:
    """Check ``code`` against the pending one; on success the address it was
    sent to becomes the account's confirmed email.  A wrong guess is counted
    (committed) even though the request is refused."""
    async with call.app.changes("email.confirm") as ch:
        verdict = await verify_code(ch.db, call.user_id, CONFIRM, code,
                                   max_attempts=call.app.config.email_code_max_attempts)
        if verdict.outcome is Outcome.RIGHT:
            assert verdict.pending is not None
            if await users.email_owner(ch.db, verdict.pending.email) not in (None, call.user_id):
                raise Conflict("email is already registered")
            await users.set_confirmed_email(ch.db, call.user_id, verdict.pending.email)
    if verdict.outcome is not Outcome.RIGHT:
        raise refusal(verdict)


def refusal(verdict: Verdict) -> SessiaError:
    """Why the code was not accepted, as the client is told."""
    if verdict.outcome is Outcome.NONE:
        return NotFound("no pending code: request one first")
    if verdict.outcome is Outcome.EXPIRED:
        return Gone("code expired, request a new code")
    if verdict.outcome is Outcome.EXHAUSTED:
        return TooManyRequests("too many attempts, request a new code")
    return wrong_code(verdict.attempts_left)


def wrong_code(left: int) -> Unprocessable:
    if left <= 0:
        return Unprocessable("wrong code, no attempts left: request a new code")
    return Unprocessable(f"wrong code, {left} attempt{'s' if left != 1 else ''} left")
