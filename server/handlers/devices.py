"""Device sessions (GetSessions, RevokeSession) and password reset by email
(ResetPassword).  The rules are in docs/api/devices.md.

A password reset must not tell who has an account: asking for a code answers
the same, at once, for every well-formed address, and the work (looking the
address up, storing a code, mailing it) runs after the answer, in the
background.  A code comes back with the new password; every refusal of that
step is the same ``wrong or expired code``.

Both steps are rate-limited per client address and per address asked for
(its identity key: the form that names the account, looked up or not)
before any work, and the background work is bounded: beyond
``--max-pending-resets`` jobs a request is refused, whatever the address,
instead of queueing more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from protocol.answers import SessionItem
from protocol.requests.devices import (
    GET_SESSIONS,
    RESET_PASSWORD,
    REVOKE_SESSION,
    GetSessions,
    ResetPassword,
    RevokeSession,
)
from protocol.status import NotFound, SessiaError, Unavailable, Unprocessable, ok
from storage import email_codes, users
from storage import sessions as session_store
from storage.errors import StorageError

from .. import accounts
from ..codes import RESET, Outcome, mail_code, verify_code
from ..mail import code_lifetime
from ..routes import Call, route
from ..sessions import Session
from ..storage_errors import status_for

if TYPE_CHECKING:
    from storage.db import Database

    from ..app import App

log = logging.getLogger("sessia.reset")

RESET_SUBJECT = "Your sessia password reset code"
RESET_REQUESTED = "if this address belongs to an account and is confirmed, a reset code has been mailed to it"
PASSWORD_RESET = "password changed: log in with the new password"
WRONG_RESET_CODE = "wrong or expired code: check it or request a new one"
RESETS_BUSY = "too many password resets in progress, try again later"

#: Mail being sent after the answer; kept so the tasks are not garbage-collected,
#: and counted against ``--max-pending-resets``.
_background: set[asyncio.Task] = set()


# -- device sessions ---------------------------------------------------------------------


@route(GET_SESSIONS)
async def get_sessions(call: Call) -> dict[str, Any]:
    req = GetSessions.parse(call.body)
    assert call.session is not None
    await call.app.sessions.flush_seen()  # this node's activity, up to this request
    rows = await session_store.list_live(call.app.db, call.user_id, take=req.take, skip=req.skip)
    return ok("sessions", Sessions=[session_item(row, call.session.id) for row in rows])


def session_item(row: session_store.DeviceSession, current_id: int) -> dict[str, Any]:
    return SessionItem(
        id=row.id,
        device_id=row.device_id,
        os=row.device_os,
        hostname=row.device_hostname,
        client_name=row.client_name,
        client_version=row.client_version,
        created_at=row.created_at,
        last_seen_at=row.last_seen_at,
        current=row.id == current_id,
    ).to_wire()


@route(REVOKE_SESSION)
async def revoke_session(call: Call) -> dict[str, Any]:
    """Log out one of my sessions, or all but this one.  Their connections
    close at once; this request's connection stays open for the answer."""
    req = RevokeSession.parse(call.body)
    assert call.session is not None
    if req.all:
        async with call.app.changes("sessions.revoke_all") as ch:
            await accounts.lock_account(ch.db, call.session)  # the second of two at once is refused
            ids, revoked = await accounts.revoke_sessions(ch.db, call.user_id, keep=call.session.id)
            ch.after_commit(lambda: call.app.sessions_ended(revoked, call.conn))
        return ok("sessions revoked", Revoked=sorted(ids))
    assert req.id is not None  # not ``all``: parse required an id
    row = await session_store.find_live(call.app.db, call.user_id, req.id)
    if row is None:
        raise NotFound("no such session")
    session = Session(row.id, row.user_id, row.device_id, row.token_hash)
    async with call.app.changes("sessions.revoke") as ch:
        await accounts.lock_account(ch.db, call.session)  # the second of two at once is refused
        one = await accounts.revoke_session(ch.db, session)
        ch.after_commit(lambda: call.app.sessions_ended(one, call.conn, token_digest=session.token_hash))
    return ok("session revoked", Revoked=[row.id])


# -- password reset ----------------------------------------------------------------------


@route(RESET_PASSWORD, session=False)
async def reset_password(call: Call) -> dict[str, Any]:
    req = ResetPassword.parse(call.body, call.app.config.min_password_length)
    await call.app.limits.reset_ip.check(call.conn.ip)
    await call.app.limits.reset_account.check(users.identity_key(req.email))
    call.app.clients.check(req.sessia.client)
    if req.sends:
        queue_reset_mail(call.app, req.email)
        return ok(RESET_REQUESTED)
    await set_new_password(call, req)
    return ok(PASSWORD_RESET)


def queue_reset_mail(app: App, email: str) -> None:
    """Mail a code after the answer, or refuse (503) while
    ``--max-pending-resets`` jobs are pending: the refusal comes before the
    address is looked at, so it is the same for every address, and a flood of
    requests costs bounded memory and work."""
    if len(_background) >= app.config.max_pending_resets:
        raise Unavailable(RESETS_BUSY)
    in_background(mail_reset_code(app, email))


def in_background(work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.get_running_loop().create_task(work)
    _background.add(task)
    task.add_done_callback(_finished)


def _finished(task: asyncio.Task) -> None:
    _background.discard(task)
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        if isinstance(exc, StorageError):  # db.py has logged why
            exc = status_for(exc)
        if isinstance(exc, SessiaError):  # the mailer has logged why
            log.info("reset code not sent: %s", exc.message)
        else:
            log.error("reset code not sent", exc_info=exc)


async def mail_reset_code(app: App, email: str) -> None:
    """Mail a reset code if ``email`` is an account's confirmed address and
    none was sent within the resend interval; otherwise do nothing."""
    cfg = app.config
    user = await users.find_for_login(app.db, email)
    if user is None or not user.email_confirmed:
        return

    async def checks(db: Database, _locked: users.User | None) -> bool:
        if await email_codes.seconds_until_resend(db, user.id, cfg.email_code_resend_interval, purpose=RESET):
            log.info("reset code for user %d not sent: one was sent recently", user.id)
            return False
        return True

    code_id = await mail_code(app, "reset", user_id=user.id, email=user.email, purpose=RESET, subject=RESET_SUBJECT,
                              text=lambda code: reset_mail_text(code, cfg.email_code_ttl), checks=checks)
    if code_id is not None:
        async with app.changes("reset.sent") as ch:
            await email_codes.mark_sent(ch.db, code_id=code_id, user_id=user.id, ttl=cfg.email_code_ttl, purpose=RESET)


def reset_mail_text(code: str, ttl: float) -> str:
    """The code alone on its line, and no other six-digit number anywhere."""
    lifetime = code_lifetime(ttl)
    return (
        "Your password reset code:\n"
        "\n"
        f"{code}\n"
        "\n"
        f"Enter it in the app with your new password. It is valid for {lifetime}.\n"
        "If you did not ask for it, ignore this message: your password stays as it is.\n"
    )


async def set_new_password(call: Call, req: ResetPassword) -> None:
    """Check the code; on success set the password and log every session out.
    A wrong guess is counted (committed) although the request is refused; every
    refusal reads the same, whatever the reason."""
    app = call.app
    code, new_password = req.code, req.new_password
    assert code is not None and new_password is not None  # not ``sends``: parse required both
    user = await users.find_for_login(app.db, req.email)
    if user is None or not user.email_confirmed:
        raise Unprocessable(WRONG_RESET_CODE)
    async with app.changes("reset.confirm") as ch:
        verdict = await verify_code(ch.db, user.id, RESET, code, max_attempts=app.config.email_code_max_attempts,
                                   for_email=user.email)
        if verdict.outcome is Outcome.RIGHT:
            password_hash = await app.passwords.hash(new_password)
            _, revoked = await accounts.replace_password(ch.db, user.id, password_hash)
            ch.after_commit(lambda: app.sessions_ended(revoked, call.conn))
    if verdict.outcome is not Outcome.RIGHT:
        raise Unprocessable(WRONG_RESET_CODE)
